"""Kernelised LSH (Kulis & Grauman, ICCV 2009), the unsupervised kernel hashing of Demir & Bruzzone (TGRS 2016).

p anchors from the training set, RBF kernel k(x, y) = exp(-||x - y||^2 / (2 sigma)) with sigma the mean squared
training-anchor distance, kernel centred in feature space (K_c = H K H, H = I - 11^T / p), K_c^{-1/2} by
eigendecomposition; for each bit a random subset S_r of t = 30 anchors gives w_r = K_c^{-1/2} e_S and
h_r(x) = [k_c(x, anchors) . w_r > 0], where k_c(x, .) is x's kernel vector centred with the same anchor
statistics. No labels are used anywhere.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from rsir.hashing import Hasher, HasherError


def sq_dists(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (n, m), clipped at 0."""
    d = (X * X).sum(1)[:, None] + (Y * Y).sum(1)[None, :] - 2.0 * X @ Y.T
    return np.maximum(d, 0.0)


def rbf(X: np.ndarray, anchors: np.ndarray, sigma: float) -> np.ndarray:
    """k(x, a) = exp(-||x - a||^2 / (2 sigma)) (sigma is a mean squared distance, as in the KSH code)."""
    return np.exp(-sq_dists(X, anchors) / (2.0 * sigma))


def pick_anchors(n: int, p: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of min(p, n) distinct training items, sorted."""
    return np.sort(rng.choice(n, min(p, n), replace=False))


class KLSH(Hasher):
    """Kernelised LSH: bits = sign(k_c(x, anchors) K_c^{-1/2} e_S), t random anchors per bit."""

    name: ClassVar[str] = "klsh"
    fit_sample: ClassVar[int] = 3000

    def __init__(self, bits: int, seed: int = 0, anchors: int = 300, t: int = 30) -> None:
        super().__init__(bits, seed)
        self.n_anchors = int(anchors)
        self.t = int(t)

    def fit(self, X: np.ndarray, labels: Any = None) -> KLSH:
        """Learn W = K_c^{-1/2} [e_S1 .. e_Sb] from the anchors; ``labels`` is accepted and never read."""
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise HasherError(f"klsh: expected at least 2 training features (n, d), got {x.shape}")
        rng = np.random.default_rng(self.seed)
        self.dim = x.shape[1]
        self.anchors = x[pick_anchors(x.shape[0], self.n_anchors, rng)]
        p = self.anchors.shape[0]
        t = min(self.t, p)
        self.sigma = float(sq_dists(x, self.anchors).mean())
        if self.sigma <= 0:
            raise HasherError("klsh: all training features are identical")
        k = rbf(self.anchors, self.anchors, self.sigma)
        self.k_col_mean = k.mean(axis=0)
        self.k_mean = float(k.mean())
        h = np.eye(p) - np.full((p, p), 1.0 / p)
        kc = h @ k @ h
        evals, evecs = np.linalg.eigh((kc + kc.T) / 2)
        # the centred kernel has a null direction (the constant vector): invert only the significant spectrum
        keep = evals > max(evals.max(), 0.0) * 1e-8
        self.k_inv_half = (evecs[:, keep] / np.sqrt(evals[keep])) @ evecs[:, keep].T
        e_s = np.zeros((p, self.bits))
        for r in range(self.bits):
            e_s[rng.choice(p, t, replace=False), r] = 1.0
        self.e_s = e_s
        self.W = self.k_inv_half @ e_s
        return self

    def kernel(self, X: np.ndarray) -> np.ndarray:
        """Centred kernel vectors k_c(x, anchors) (n, p), consistent with K_c = H K H."""
        k = rbf(X, self.anchors, self.sigma)
        return k - k.mean(axis=1, keepdims=True) - self.k_col_mean[None, :] + self.k_mean

    def _project(self, X: np.ndarray) -> np.ndarray:
        return self.kernel(X) @ self.W

    def _params(self) -> dict[str, Any]:
        return {"anchors": self.n_anchors, "t": self.t}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"anchors": self.anchors, "k_col_mean": self.k_col_mean, "k_inv_half": self.k_inv_half,
                "e_s": self.e_s, "W": self.W, "scalars": np.array([self.sigma, self.k_mean])}

    def _set_state(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super()._set_state(params, arrays)
        self.sigma, self.k_mean = float(arrays["scalars"][0]), float(arrays["scalars"][1])
