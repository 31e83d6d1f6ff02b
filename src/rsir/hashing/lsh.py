"""Random-hyperplane LSH (Charikar 2002): bit r = sign(w_r . (x - mean)), w_r ~ N(0, I)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from rsir.hashing import Hasher, HasherError


class LSH(Hasher):
    """Sign random projections of zero-centred features (centred by the training mean); ignores labels."""

    name: ClassVar[str] = "lsh"

    def fit(self, X: np.ndarray, labels: Any = None) -> LSH:
        """Store the training mean and draw ``bits`` Gaussian hyperplanes."""
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 1:
            raise HasherError(f"lsh: expected training features (n, d), got {x.shape}")
        self.dim = x.shape[1]
        self.mean = x.mean(axis=0)
        self.W = np.random.default_rng(self.seed).standard_normal((self.dim, self.bits))
        return self

    def _project(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) @ self.W

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "W": self.W}
