"""A small ResNet for multispectral patches of any band count and size, in plain torch.

The stem reduces the patch 4x at once (a strided 4x4 convolution, like a patch embedding) so that a 12x120x120
Sentinel-2 patch is processed at 30x30 from the first block on; with the default narrow widths this keeps
encoding above 1,000 patches/s on two CPU cores (bench/train_bench.py). Stages of basic residual blocks
(two 3x3 convolutions, batch norm, identity or 1x1 projection shortcut) follow, each after the first halving the
resolution, then global average pooling gives the feature vector of ``4 * width`` (for 3 stages) values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn


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
        stages: list[nn.Module] = []
        cin = w
        for i, n in enumerate(config.blocks):
            cout = w * 2 ** i
            for j in range(n):
                stages.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        return self.pool(self.stages(self.stem(x))).flatten(1)
