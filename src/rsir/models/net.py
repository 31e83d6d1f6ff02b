"""The network every rsir method trains: an encoder plus optional classifier and hash heads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rsir.models.heads import ClassifierHead, MilanHashHead
from rsir.models.resnet import ResNet, ResNetConfig, fuse_for_inference


@dataclass
class NetConfig:
    """What a saved model is: encoder shape, heads, and what ``encode`` outputs ("features" or "hash")."""

    encoder: ResNetConfig = field(default_factory=ResNetConfig)
    n_classes: int = 0
    bits: int = 0
    output: str = "features"  # "features": pooled float features; "hash": thresholded MiLAN codes
    method: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"encoder": self.encoder.to_json(), "n_classes": self.n_classes, "bits": self.bits,
                "output": self.output, "method": self.method}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NetConfig:
        return cls(ResNetConfig.from_json(d["encoder"]), int(d.get("n_classes", 0)), int(d.get("bits", 0)),
                   str(d.get("output", "features")), str(d.get("method", "")))


class RetrievalNet(nn.Module):
    """Encoder + (classifier head) + (MiLAN hash head); ``forward`` returns a dict of the outputs present."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ResNet(config.encoder)
        d = self.encoder.feature_dim
        self.classifier = ClassifierHead(d, config.n_classes) if config.n_classes else None
        self.hash_head = MilanHashHead(d, config.bits) if config.bits else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.encoder(x)
        out = {"features": f}
        if self.classifier is not None:
            out["logits"] = self.classifier(f)
        if self.hash_head is not None:
            out["hash"] = self.hash_head(f)
        return out

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim

    def for_inference(self) -> RetrievalNet:
        """An eval-mode copy for encoding: batch norms folded into the convolutions; shares the heads."""
        fast = RetrievalNet.__new__(RetrievalNet)
        nn.Module.__init__(fast)
        fast.config = self.config
        fast.encoder = fuse_for_inference(self.encoder)
        fast.classifier, fast.hash_head = self.classifier, self.hash_head
        return fast.eval()
