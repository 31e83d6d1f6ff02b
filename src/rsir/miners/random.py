"""Random triplets with multi-label relevance: per anchor, uniformly drawn positives and negatives."""

from __future__ import annotations

import torch

from rsir.miners.base import IndicesTuple, empty_tuple, relevance


def _uniform_choice(mask: torch.Tensor, draws: int, generator: torch.Generator) -> torch.Tensor:
    """Per row of a boolean mask, ``draws`` column indices drawn uniformly (with replacement) among True ones.

    The argmax of i.i.d. uniform scores restricted to the mask is a uniform pick among the masked entries.
    """
    scores = torch.rand((draws, *mask.shape), generator=generator)
    return torch.where(mask[None], scores, torch.full_like(scores, -1.0)).argmax(2).T


class RandomTripletMiner:
    """Every batch item that has a positive and a negative is an anchor with ``per_anchor`` random triplets."""

    def __init__(self, per_anchor: int = 1, seed: int = 0) -> None:
        self.per_anchor = per_anchor
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> IndicesTuple:
        pos, neg = (m.cpu() for m in relevance(labels.cpu()))
        ok = pos.any(1) & neg.any(1)
        if not bool(ok.any()) or self.per_anchor < 1:
            return empty_tuple(embeddings.device)
        a = torch.nonzero(ok).flatten()
        p = _uniform_choice(pos[a], self.per_anchor, self.generator)
        n = _uniform_choice(neg[a], self.per_anchor, self.generator)
        dev = embeddings.device
        return (a.repeat_interleave(self.per_anchor).to(dev), p.reshape(-1).to(dev), n.reshape(-1).to(dev))
