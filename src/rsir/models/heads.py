"""Heads on top of a feature vector: the MiLAN hash head and the multi-label classifier head."""

from __future__ import annotations

import torch
from torch import nn


class MilanHashHead(nn.Module):
    """MiLAN head (Roy et al. 2021): FC 1024 - LeakyReLU(0.2) - FC 512 - LeakyReLU(0.2) - FC K - sigmoid.

    As in the MHCLN code the layers are He-uniform initialised (tflib), with no batch norm and no dropout.
    The input is the frozen feature vector (2048-d Inception pool_3 in the paper; the penultimate features of
    rsir's own classifier here).
    """

    def __init__(self, in_dim: int, bits: int, hidden: tuple[int, int] = (1024, 512), slope: float = 0.2) -> None:
        super().__init__()
        self.in_dim, self.bits = in_dim, bits
        self.fc1 = nn.Linear(in_dim, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], bits)
        self.act = nn.LeakyReLU(slope)
        for fc in (self.fc1, self.fc2, self.fc3):
            nn.init.kaiming_uniform_(fc.weight, a=0.0, nonlinearity="relu")
            nn.init.zeros_(fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sigmoid outputs h in (0, 1)^K."""
        return torch.sigmoid(self.fc3(self.act(self.fc2(self.act(self.fc1(x))))))


class ClassifierHead(nn.Module):
    """Linear multi-label classifier on pooled features (logits; sigmoid/BCE or focal loss outside)."""

    def __init__(self, in_dim: int, n_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)
