"""FaceNet semi-hard negative mining (Schroff, Kalenichenko, Philbin, CVPR 2015), with multi-label relevance.

Every anchor-positive pair of the batch is used (positive = shares >= 1 label with the anchor). For each pair the
negative (shares no label) is the nearest one that is still farther from the anchor than the positive, inside the
margin: d(a, p) < d(a, n) < d(a, p) + margin, i.e. a negative that violates the margin without being harder than
the positive. Pairs with no such negative give no triplet (the triplets would have zero or "hard" loss), as in
FaceNet's definition; the count of triplets shrinks as training separates the classes.
"""

from __future__ import annotations

import torch

from rsir.losses.triplet import SquaredEuclidean
from rsir.miners.base import IndicesTuple, empty_tuple, relevance


class SemiHardMiner:
    """All (anchor, positive) pairs, each with its semi-hard negative: min d(a, n) s.t. d(a,p) < d(a,n) < d(a,p)+m."""

    def __init__(self, margin: float = 0.2, distance: SquaredEuclidean | None = None) -> None:
        self.margin = margin
        self.distance = distance if distance is not None else SquaredEuclidean()

    @torch.no_grad()
    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> IndicesTuple:
        pos, neg = relevance(labels.to(embeddings.device))
        d = self.distance.pairwise(embeddings.detach().float())
        a, p = torch.nonzero(pos, as_tuple=True)
        if len(a) == 0:
            return empty_tuple(embeddings.device)
        d_ap = d[a, p][:, None]                 # (pairs, 1)
        d_an = d[a]                             # (pairs, B)
        band = neg[a] & (d_an > d_ap) & (d_an < d_ap + self.margin)
        cand = torch.where(band, d_an, torch.full_like(d_an, float("inf")))
        n = cand.argmin(1)                      # first (lowest batch position) among equal distances
        ok = band.any(1)
        return a[ok], p[ok], n[ok]
