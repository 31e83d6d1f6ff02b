"""Iterative quantisation (Gong & Lazebnik, CVPR 2011): PCA to b dims, then a rotation minimising quantisation loss."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from rsir.hashing import Hasher, HasherError


class ITQ(Hasher):
    """Centre, project on the top-b principal directions, rotate by R learned by alternating B and R (50 iters)."""

    name: ClassVar[str] = "itq"

    def __init__(self, bits: int, seed: int = 0, iterations: int = 50) -> None:
        super().__init__(bits, seed)
        self.iterations = int(iterations)

    def fit(self, X: np.ndarray, labels: Any = None) -> ITQ:
        """PCA then ITQ rotation: B = sgn(VR); R = U W^T from the SVD V^T B = U S W^T (orthogonal Procrustes)."""
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] < self.bits or x.shape[0] < 2:
            raise HasherError(f"itq: {self.bits} bits need features with >= {self.bits} dims, got {x.shape}")
        self.dim = x.shape[1]
        self.mean = x.mean(axis=0)
        xc = x - self.mean
        cov = xc.T @ xc / max(1, x.shape[0] - 1)
        evals, evecs = np.linalg.eigh(cov)
        self.pca = evecs[:, np.argsort(evals)[::-1][:self.bits]]
        v = xc @ self.pca
        rng = np.random.default_rng(self.seed)
        r, _ = np.linalg.qr(rng.standard_normal((self.bits, self.bits)))
        self.losses: list[float] = []
        for _ in range(self.iterations):
            b = np.where(v @ r > 0, 1.0, -1.0)
            self.losses.append(float(((b - v @ r) ** 2).sum()))
            u, _, wt = np.linalg.svd(v.T @ b)
            r = u @ wt
        self.R = r
        return self

    def _project(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) @ self.pca @ self.R

    def _params(self) -> dict[str, Any]:
        return {"iterations": self.iterations}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "pca": self.pca, "R": self.R}
