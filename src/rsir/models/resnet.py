"""A small ResNet for multispectral patches of any band count and size, in plain torch.

The stem reduces the patch 4x at once (a strided 4x4 convolution, like a patch embedding) so that a 12x120x120
Sentinel-2 patch is processed at 30x30 from the first block on; the default narrow widths keep encoding fast on
two CPU cores (bench/train_bench.py). Stages of basic residual blocks (two 3x3 convolutions, batch norm, identity
or 1x1 projection shortcut) follow, each after the first halving the resolution, then global average pooling
gives the feature vector of ``4 * width`` (for 3 stages) values.

Memory format: channels-last while training and on CUDA, the default (NCHW) layout for inference on CPU.
Measured on the 2-core machine (bench/train_bench.py), oneDNN runs this narrow network's training steps about
20% faster in channels-last but its inference 1.5-2x slower, so :meth:`ResNet.train` switches the layout with the
mode. :func:`fuse_for_inference` folds each batch norm into the convolution before it, for encoding.
``rsir index`` of a cross-modal model goes further (rsir.models.native_input): its stem reads the bands at their
native sizes and its stages run on oneDNN's blocked layout with the weights reordered once.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


@dataclass
class ResNetConfig:
    """Shape of the encoder: input bands, stem stride, base width, blocks per stage."""

    in_channels: int = 12
    width: int = 16
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1])
    stem_stride: int = 4

    @property
    def feature_dim(self) -> int:
        return self.width * 2 ** (len(self.blocks) - 1)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ResNetConfig:
        return cls(int(d["in_channels"]), int(d["width"]), [int(b) for b in d["blocks"]], int(d["stem_stride"]))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, ReLU (He et al. 2016)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)
        self.short: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + self.short(x))


def residual_stages(cin: int, width: int, blocks: list[int]) -> nn.Sequential:
    """Stages of basic blocks: stage i has ``width * 2**i`` channels and ``blocks[i]`` blocks; the first block of
    every stage after the first halves the resolution."""
    layers: list[nn.Module] = []
    for i, n in enumerate(blocks):
        cout = width * 2 ** i
        for j in range(n):
            layers.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
            cin = cout
    return nn.Sequential(*layers)


def init_residual(module: nn.Module) -> None:
    """He (fan-out) initialisation of every convolution, unit-scale zero-shift batch norms (He et al. 2016)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNet(nn.Module):
    """Multispectral ResNet encoder: N x C x H x W -> N x feature_dim (global average pooled)."""

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        s = config.stem_stride
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, w, kernel_size=max(s, 3), stride=s, padding=(max(s, 3) - s) // 2,
                      bias=False),
            nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        self.stages = residual_stages(w, w, config.blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        init_residual(self)
        self.memory_format = torch.contiguous_format
        self._use_format(torch.channels_last)

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def _use_format(self, fmt: torch.memory_format) -> None:
        if fmt != self.memory_format:
            self.to(memory_format=fmt)  # type: ignore[call-overload]
            self.memory_format = fmt

    def train(self, mode: bool = True) -> ResNet:
        """Set the mode, and the memory format that is fastest for it (see the module docstring)."""
        super().train(mode)
        on_cuda = self.stem[0].weight.is_cuda
        self._use_format(torch.channels_last if mode or on_cuda else torch.contiguous_format)
        return self

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """N x feature_dim x h x w activations of the last stage, before pooling (tokens for fusion models)."""
        x = x.contiguous(memory_format=self.memory_format)
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.feature_map(x)).flatten(1)


def fuse_for_inference(encoder: ResNet) -> ResNet:
    """An eval-mode copy of ``encoder`` with every batch norm folded into its convolution (same outputs up to
    float rounding, one pass over the activations less per convolution)."""
    enc = copy.deepcopy(encoder).eval()
    conv, bn = enc.stem[0], enc.stem[1]
    assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
    enc.stem[0], enc.stem[1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    for b in enc.stages:
        assert isinstance(b, BasicBlock)
        b.conv1, b.bn1 = fuse_conv_bn_eval(b.conv1, b.bn1), nn.Identity()  # type: ignore[assignment]
        b.conv2, b.bn2 = fuse_conv_bn_eval(b.conv2, b.bn2), nn.Identity()  # type: ignore[assignment]
        if isinstance(b.short, nn.Sequential):
            sc, sb = b.short[0], b.short[1]
            assert isinstance(sc, nn.Conv2d) and isinstance(sb, nn.BatchNorm2d)
            b.short = fuse_conv_bn_eval(sc, sb)
    return enc
