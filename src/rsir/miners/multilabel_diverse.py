"""Multi-label triplet sampling of Sumbul, Ravanbakhsh and Demir (TGRS 2022, arXiv:2105.03647).

Step 1, anchors: a subset of the mini-batch that is diverse in the embedding space, chosen by an iterative
farthest-point (max-min, k-center greedy) algorithm.
Step 2, per anchor: candidate positives (share >= 1 label) and negatives (share none) are ranked by three
criteria and the ranks combined; the top ``n_pos`` positives and ``n_neg`` negatives are kept, and every
(anchor, positive, negative) combination is a triplet, i.e. n_anchors * n_pos * n_neg triplets per batch
instead of the batch-all count.
- relevancy: label overlap, measured by the Jaccard index of the label sets (higher = more relevant);
- hardness: far positives, near negatives in the embedding space;
- diversity: the order in which the candidates are picked by farthest-point selection within the candidate set.

Choices where the published description (abstract + method outline available to us) is not explicit:
- The first anchor is drawn at random (seeded generator) among the eligible items (those with at least one
  positive and one negative in the batch); later anchors maximise the minimum distance to the chosen anchors.
- Negatives share no label with the anchor, so their Jaccard relevance is 0 for all; relevancy then ties and
  the negative ranking is decided by hardness and diversity.
- Diversity ordering starts from the hardest candidate and repeatedly adds the candidate farthest (max-min) from
  those already picked.
- Rank aggregation is a Borda count: the sum of the three ranks (ties given their average rank); equal sums are
  broken by the hardness rank, then by batch position.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata

from rsir.losses.triplet import Euclidean, SquaredEuclidean
from rsir.miners.base import IndicesTuple, empty_tuple, relevance


def farthest_point_order(d: np.ndarray, candidates: list[int], start: list[int], n: int) -> list[int]:
    """Greedy max-min selection: repeatedly add the candidate with the largest distance to the chosen set.

    ``start`` seeds the chosen set (not returned); without a start the first candidate is taken first.
    Ties go to the earlier candidate in ``candidates``.
    """
    cand = list(candidates)
    chosen: list[int] = []
    if not start:
        if not cand:
            return []
        chosen.append(cand.pop(0))
        start = chosen[:]
    mind = np.min(d[np.ix_(start, cand)], axis=0) if cand else np.zeros(0)
    while cand and len(chosen) < n:
        j = int(np.argmax(mind))
        c = cand.pop(j)
        chosen.append(c)
        mind = np.delete(mind, j)
        if cand:
            mind = np.minimum(mind, d[c, cand])
    return chosen


def rank_candidates(d_anchor: np.ndarray, jaccard: np.ndarray, d: np.ndarray, candidates: list[int],
                    positive: bool) -> list[int]:
    """Order ``candidates`` by aggregated relevancy, hardness and diversity ranks (best first)."""
    if not candidates:
        return []
    c = np.asarray(candidates)
    r_rel = rankdata(-jaccard[c], method="average")
    hard_key = -d_anchor[c] if positive else d_anchor[c]
    r_hard = rankdata(hard_key, method="average")
    hardest = [int(c[i]) for i in np.lexsort((c, hard_key))]
    order = farthest_point_order(d, hardest, [], len(hardest))
    pos_in_div = {v: i for i, v in enumerate(order)}
    r_div = np.array([pos_in_div[int(v)] + 1 for v in c], dtype=float)
    total = r_rel + r_hard + r_div
    idx = np.lexsort((c, r_hard, total))
    return [int(c[i]) for i in idx]


class MultiLabelDiverseMiner:
    """Diverse anchors + relevancy/hardness/diversity ranked positives and negatives (Sumbul et al.)."""

    def __init__(self, n_anchors: int | None = None, anchor_fraction: float = 0.5, n_pos: int = 2,
                 n_neg: int = 2, distance: SquaredEuclidean | None = None, seed: int = 0) -> None:
        self.n_anchors = n_anchors
        self.anchor_fraction = anchor_fraction
        self.n_pos, self.n_neg = n_pos, n_neg
        self.distance = distance if distance is not None else Euclidean()
        self.generator = torch.Generator().manual_seed(seed)

    def select_anchors(self, d: np.ndarray, eligible: list[int]) -> list[int]:
        """Diverse anchors among ``eligible``: a random first one, then farthest-point selection."""
        if not eligible:
            return []
        n = self.n_anchors if self.n_anchors is not None else max(1, round(self.anchor_fraction * len(d)))
        first = eligible[int(torch.randint(len(eligible), (1,), generator=self.generator))]
        rest = [e for e in eligible if e != first]
        return [first] + farthest_point_order(d, rest, [first], min(n, len(eligible)) - 1)

    @torch.no_grad()
    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> IndicesTuple:
        pos, neg = (m.cpu().numpy() for m in relevance(labels))
        d = self.distance.pairwise(embeddings.detach().float()).cpu().double().numpy()
        lab = labels.float().cpu().numpy() if labels.ndim == 2 else np.eye(int(labels.max()) + 1)[labels.cpu()]
        inter = lab @ lab.T
        union = lab.sum(1)[:, None] + lab.sum(1)[None] - inter
        jac = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        eligible = [i for i in range(len(d)) if pos[i].any() and neg[i].any()]
        anchors = self.select_anchors(d, eligible)
        trip: list[tuple[int, int, int]] = []
        for a in anchors:
            p_sel = rank_candidates(d[a], jac[a], d, np.flatnonzero(pos[a]).tolist(), True)[: self.n_pos]
            n_sel = rank_candidates(d[a], jac[a], d, np.flatnonzero(neg[a]).tolist(), False)[: self.n_neg]
            trip.extend((a, p, n) for p in p_sel for n in n_sel)
        if not trip:
            return empty_tuple(embeddings.device)
        t = torch.tensor(trip, dtype=torch.long, device=embeddings.device)
        return t[:, 0], t[:, 1], t[:, 2]
