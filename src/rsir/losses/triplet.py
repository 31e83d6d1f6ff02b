"""Distances and the triplet margin loss, composed as objects (pytorch-metric-learning style).

A loss takes ``(embeddings, indices_tuple)`` where ``indices_tuple = (anchors, positives, negatives)`` comes
from a miner; the distance object decides how embedding pairs are compared.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IndicesTuple = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class SquaredEuclidean:
    """||x - y||^2, optionally on L2-normalised inputs (MiLAN: normalise the sigmoid outputs first)."""

    def __init__(self, normalize: bool = False) -> None:
        self.normalize = normalize

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, p=2, dim=1) if self.normalize else x

    def pairwise(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """N x M matrix of distances between the rows of x and y (x with itself when y is None)."""
        x = self.prepare(x)
        y = x if y is None else self.prepare(y)
        d = (x * x).sum(1, keepdim=True) + (y * y).sum(1)[None] - 2.0 * x @ y.T
        return d.clamp_min(0.0)

    def rows(self, x: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """Distance between rows x[i] and x[j], elementwise over the index vectors."""
        z = self.prepare(x)
        return ((z[i] - z[j]) ** 2).sum(1)


class Euclidean(SquaredEuclidean):
    """||x - y|| (square root of the squared distance)."""

    def pairwise(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return super().pairwise(x, y).clamp_min(1e-12).sqrt()

    def rows(self, x: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return super().rows(x, i, j).clamp_min(1e-12).sqrt()


class TripletMarginLoss(nn.Module):
    """mean over mined triplets of max(0, d(a, p) - d(a, n) + margin); 0 (with a graph) when none were mined."""

    def __init__(self, margin: float = 0.2, distance: SquaredEuclidean | None = None) -> None:
        super().__init__()
        self.margin = margin
        self.distance = distance if distance is not None else SquaredEuclidean()

    def forward(self, embeddings: torch.Tensor, indices_tuple: IndicesTuple) -> torch.Tensor:
        a, p, n = indices_tuple
        if len(a) == 0:
            return embeddings.sum() * 0.0
        d_ap = self.distance.rows(embeddings, a, p)
        d_an = self.distance.rows(embeddings, a, n)
        return F.relu(d_ap - d_an + self.margin).mean()
