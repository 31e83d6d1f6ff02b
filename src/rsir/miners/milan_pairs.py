"""The original MiLAN two-class triplet sampler (MHCLN code), for single-label archives.

Each iteration shuffles the class list and takes c+ = first, c- = second; anchors are N random items of c+,
positives the next N items of c+ (disjoint from the anchors), negatives N items of c-. A batch is the 3N
indices [anchors, positives, negatives], and :class:`FixedTripletMiner` returns that fixed structure.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from rsir.errors import RsirError
from rsir.miners.base import IndicesTuple


class MilanPairsBatchSampler:
    """Batch sampler of dataset positions: ``iterations`` batches of 3 * ``n_triplets`` items from two classes."""

    def __init__(self, classes: np.ndarray, n_triplets: int = 30, iterations: int = 100, seed: int = 0) -> None:
        self.classes = np.asarray(classes)
        self.n = n_triplets
        self.iterations = iterations
        self.rng = np.random.default_rng(seed)
        self.by_class = {int(c): np.flatnonzero(self.classes == c) for c in np.unique(self.classes)}
        usable = [c for c, idx in self.by_class.items() if len(idx) >= 2 * n_triplets]
        if len(self.by_class) < 2 or not usable:
            raise RsirError(f"milan-pairs sampler needs >= 2 classes and a class with >= {2 * n_triplets} items")

    def __len__(self) -> int:
        return self.iterations

    def __iter__(self) -> Iterator[list[int]]:
        cls = np.array(sorted(self.by_class))
        for _ in range(self.iterations):
            while True:
                order = self.rng.permutation(cls)
                cp, cn = int(order[0]), int(order[1])
                if len(self.by_class[cp]) >= 2 * self.n:
                    break
            pos = self.rng.permutation(self.by_class[cp])[: 2 * self.n]
            neg = self.rng.choice(self.by_class[cn], self.n, replace=len(self.by_class[cn]) < self.n)
            yield [int(i) for i in np.concatenate([pos, neg])]


class FixedTripletMiner:
    """For batches laid out as [anchors | positives | negatives]: triplets (i, N + i, 2N + i)."""

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> IndicesTuple:
        b = len(embeddings)
        if b % 3:
            raise ValueError(f"batch of {b} items is not [anchors | positives | negatives]")
        n = b // 3
        a = torch.arange(n, device=embeddings.device)
        return a, a + n, a + 2 * n
