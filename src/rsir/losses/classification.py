"""Multi-label classification losses on logits: binary cross-entropy and the sigmoid focal loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiLabelBCE(nn.Module):
    """Mean over items and classes of the binary cross-entropy of sigmoid(logits) against multi-hot targets."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


class FocalLoss(nn.Module):
    """Sigmoid focal loss (Lin et al. 2017): mean of -alpha_t (1 - p_t)^gamma log p_t over items and classes."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0) -> None:
        super().__init__()
        self.alpha, self.gamma = alpha, gamma

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        t = targets.to(logits.dtype)
        ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * t + (1 - p) * (1 - t)
        loss = ce * (1 - p_t) ** self.gamma
        if self.alpha >= 0:
            loss = (self.alpha * t + (1 - self.alpha) * (1 - t)) * loss
        return loss.mean()
