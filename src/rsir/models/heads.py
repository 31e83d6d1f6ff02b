"""Heads on top of a feature vector: the MiLAN hash head and the multi-label classifier head."""

from __future__ import annotations

import torch
from torch import nn


def he_uniform_mean_fan_(weight: torch.Tensor) -> torch.Tensor:
    """tflib's He initialisation (MHCLN): U(-b, b) with b = sqrt(3) * sqrt(4 / (fan_in + fan_out)), in place.

    For a 2048 -> 1024 layer b = 0.0442, where torch's kaiming_uniform_ (fan_in) gives 0.0541.
    """
    fan_out, fan_in = weight.shape[0], weight[0].numel()
    bound = (3.0 * 4.0 / (fan_in + fan_out)) ** 0.5
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


class MilanHashHead(nn.Module):
    """MiLAN head (Roy et al. 2021): FC 1024 - LeakyReLU(0.2) - FC 512 - LeakyReLU(0.2) - FC K - sigmoid.

    Initialised as the MHCLN code does: its three layers are tflib ``Conv2D`` 1x1 convolutions with the default
    ``he_init=True``, i.e. weights uniform in +-sqrt(3) * sqrt(4 / (fan_in + fan_out)) (He's factor 2 over the
    mean fan, not over fan_in alone) and zero biases (:func:`he_uniform_mean_fan_`); no batch norm, no dropout.
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
            he_uniform_mean_fan_(fc.weight)
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
