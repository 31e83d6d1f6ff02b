"""The contrastive loss on labelled pairs (Hadsell, Chopra and LeCun 2006), the objective ANNEAL trains with.

For a pair at embedding distance d with label y (1 similar, 0 dissimilar):
``L = y * d^2 + (1 - y) * max(0, m - d)^2``, averaged over the pairs. Similar pairs are pulled together,
dissimilar ones pushed apart until they are at least the margin m away.
"""

from __future__ import annotations

import torch
from torch import nn


class ContrastiveLoss(nn.Module):
    """Mean contrastive loss of pairs ``(i, j)`` of rows of ``embeddings`` with labels ``y`` (1 similar)."""

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        if margin <= 0:
            raise ValueError(f"the contrastive margin must be positive, got {margin}")
        self.margin = margin

    def forward(self, embeddings: torch.Tensor, i: torch.Tensor, j: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if len(i) == 0:
            return embeddings.sum() * 0.0
        d = ((embeddings[i] - embeddings[j]) ** 2).sum(1).clamp_min(1e-12).sqrt()
        y = y.to(d.dtype)
        return (y * d ** 2 + (1.0 - y) * (self.margin - d).clamp_min(0.0) ** 2).mean()
