"""Batch-hard mining (Hermans et al. 2017) with multi-label relevance: farthest positive, nearest negative."""

from __future__ import annotations

import torch

from rsir.losses.triplet import SquaredEuclidean
from rsir.miners.base import IndicesTuple, empty_tuple, relevance


class BatchHardMiner:
    """One triplet per anchor: the positive at the largest and the negative at the smallest distance."""

    def __init__(self, distance: SquaredEuclidean | None = None) -> None:
        self.distance = distance if distance is not None else SquaredEuclidean()

    @torch.no_grad()
    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> IndicesTuple:
        pos, neg = relevance(labels.to(embeddings.device))
        d = self.distance.pairwise(embeddings.detach().float())
        ok = pos.any(1) & neg.any(1)
        if not ok.any():
            return empty_tuple(embeddings.device)
        p = torch.where(pos, d, torch.full_like(d, -float("inf"))).argmax(1)
        n = torch.where(neg, d, torch.full_like(d, float("inf"))).argmin(1)
        a = torch.nonzero(ok).flatten()
        return a, p[a], n[a]
