"""Random triplets with multi-label relevance: per anchor, uniformly drawn positives and negatives."""

from __future__ import annotations

import torch

from rsir.miners.base import IndicesTuple, empty_tuple, relevance


class RandomTripletMiner:
    """Every batch item that has a positive and a negative is an anchor with ``per_anchor`` random triplets."""

    def __init__(self, per_anchor: int = 1, seed: int = 0) -> None:
        self.per_anchor = per_anchor
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> IndicesTuple:
        pos, neg = (m.cpu() for m in relevance(labels))
        a_out, p_out, n_out = [], [], []
        for a in range(len(pos)):
            p_idx = torch.nonzero(pos[a]).flatten()
            n_idx = torch.nonzero(neg[a]).flatten()
            if len(p_idx) == 0 or len(n_idx) == 0:
                continue
            pi = torch.randint(len(p_idx), (self.per_anchor,), generator=self.generator)
            ni = torch.randint(len(n_idx), (self.per_anchor,), generator=self.generator)
            a_out.append(torch.full((self.per_anchor,), a, dtype=torch.long))
            p_out.append(p_idx[pi])
            n_out.append(n_idx[ni])
        if not a_out:
            return empty_tuple(embeddings.device)
        dev = embeddings.device
        return torch.cat(a_out).to(dev), torch.cat(p_out).to(dev), torch.cat(n_out).to(dev)
