"""Encoders in plain torch (multispectral ResNet), MiLAN hash head and classifier head, model directories."""

from rsir.models.heads import ClassifierHead, MilanHashHead
from rsir.models.net import NetConfig, RetrievalNet
from rsir.models.resnet import ResNet, ResNetConfig

__all__ = ["ClassifierHead", "MilanHashHead", "NetConfig", "ResNet", "ResNetConfig", "RetrievalNet"]
