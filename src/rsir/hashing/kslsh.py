"""Kernel-based supervised hashing (KSH, Liu et al. CVPR 2012), the KSLSH of Demir & Bruzzone (TGRS 2016).

Kernel features k̄(x) = [exp(-||x - a_j||^2 / (2 sigma)) - mu_j]_j over m anchors, sigma = mean squared
training-anchor distance, mu_j = mean of column j over the training data. h_k(x) = sgn(a_k^T k̄(x)).
Labels enter only through the pairwise similarity S of l labelled samples: S_ij = +1 when items i and j share
at least one label (multi-label; for single labels: the same class), -1 otherwise. The objective
min ||H H^T - r S||_F^2 is optimised greedily bit by bit on the residual R_k = r S - sum_{t<k} y_t y_t^T:
(a) spectral init a0 = top generalised eigenvector of (K̄^T R K̄, K̄^T K̄) scaled so a0^T K̄^T K̄ a0 = l;
(b) minimise g(a) = -phi(K̄ a)^T R phi(K̄ a), phi(z) = 2 / (1 + e^-z) - 1, by Nesterov-accelerated gradient with
backtracking (step search 2^j, j <= 50; <= 500 iterations or |delta g| / l <= 1e-2); (c) keep whichever of a0
and a* gives the larger y^T R y with y = sgn(K̄ a); then R <- R - y y^T.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.linalg

from rsir.hashing import Hasher, HasherError
from rsir.hashing.klsh import pick_anchors, rbf, sq_dists


def similarity_matrix(labels: Any) -> np.ndarray:
    """S in {+1, -1}: +1 when two items share >= 1 label (multi-hot rows) or have the same class (1-D labels)."""
    lab = np.asarray(labels)
    if lab.ndim == 1:
        return np.where(lab[:, None] == lab[None, :], 1.0, -1.0)
    y = (lab > 0).astype(np.float64)
    return np.where(y @ y.T > 0, 1.0, -1.0)


def phi(z: np.ndarray) -> np.ndarray:
    """The sigmoid surrogate of sgn: 2 / (1 + exp(-z)) - 1 (= tanh(z / 2), numerically stable)."""
    return np.tanh(z / 2.0)


def sgn(z: np.ndarray) -> np.ndarray:
    """+1 where z > 0, else -1 (the code convention of rsir.bits)."""
    return np.where(z > 0, 1.0, -1.0)


def surrogate(a: np.ndarray, kk: np.ndarray, r: np.ndarray) -> tuple[float, np.ndarray]:
    """g(a) = -phi(K a)^T R phi(K a) and its gradient -K^T ((R phi) * (1 - phi^2)) (phi' = (1 - phi^2) / 2)."""
    f = phi(kk @ a)
    rf = r @ f
    return float(-f @ rf), -kk.T @ (rf * (1.0 - f * f))


def surrogate_value(a: np.ndarray, kk: np.ndarray, r: np.ndarray) -> float:
    """g(a) alone, computed exactly as ``surrogate`` does (the step search needs no gradient)."""
    f = phi(kk @ a)
    return float(-f @ (r @ f))


def optimise_bit(a0: np.ndarray, kk: np.ndarray, r: np.ndarray, max_iter: int = 500, tol: float = 1e-2
                 ) -> tuple[np.ndarray, int]:
    """Nesterov-accelerated gradient descent with backtracking on g; returns (a*, iterations run)."""
    l_count = kk.shape[0]
    a_prev = a = a0.copy()
    g_a = surrogate_value(a, kk, r)
    t_prev, t_cur = 0.0, 1.0
    lip = 1.0
    iterations = 0
    for _ in range(max_iter):
        iterations += 1
        s = a + ((t_prev - 1.0) / t_cur) * (a - a_prev)
        g_s, grad = surrogate(s, kk, r)
        for j in range(51):  # step 1 / (lip * 2^j): the smallest j that passes the quadratic upper bound
            gamma = lip * 2.0 ** j
            cand = s - grad / gamma
            g_c = surrogate_value(cand, kk, r)
            diff = cand - s
            if g_c <= g_s + grad @ diff + 0.5 * gamma * (diff @ diff):
                break
        lip = gamma
        a_prev, a = a, cand
        t_prev, t_cur = t_cur, (1.0 + np.sqrt(1.0 + 4.0 * t_cur * t_cur)) / 2.0
        done = abs(g_c - g_a) / l_count <= tol
        g_a = g_c
        if done:
            break
    return a, iterations


class KSLSH(Hasher):
    """Supervised kernel hashing (KSH / KSLSH) with m anchors, learned on l labelled samples."""

    name: ClassVar[str] = "kslsh"
    fit_sample: ClassVar[int] = 2000
    supervised: ClassVar[bool] = True

    def __init__(self, bits: int, seed: int = 0, anchors: int = 300, labelled: int = 2000,
                 max_iter: int = 500) -> None:
        super().__init__(bits, seed)
        self.n_anchors = int(anchors)
        self.labelled = int(labelled)
        self.max_iter = int(max_iter)

    def fit(self, X: np.ndarray, labels: Any = None) -> KSLSH:
        """Greedy bit-wise KSH: spectral init, sigmoid-surrogate optimisation, residual update per bit."""
        if labels is None:
            raise HasherError("kslsh is supervised: fit needs the training labels")
        x = np.asarray(X, dtype=np.float64)
        lab = np.asarray(labels)
        if x.ndim != 2 or x.shape[0] < 2 or lab.shape[0] != x.shape[0]:
            raise HasherError(f"kslsh: features {x.shape} and labels {lab.shape} do not match")
        rng = np.random.default_rng(self.seed)
        self.dim = x.shape[1]
        self.anchors = x[pick_anchors(x.shape[0], self.n_anchors, rng)]
        d2 = sq_dists(x, self.anchors)
        self.sigma = float(d2.mean())
        if self.sigma <= 0:
            raise HasherError("kslsh: all training features are identical")
        k_train = np.exp(-d2 / (2.0 * self.sigma))
        self.mu = k_train.mean(axis=0)
        sel = pick_anchors(x.shape[0], self.labelled, rng)
        kk = k_train[sel] - self.mu
        s = similarity_matrix(lab[sel])
        l_count = kk.shape[0]
        r = self.bits * s
        self.residual_trace: list[float] = []
        self.chosen: list[str] = []
        lm = kk.T @ kk
        lm_reg = lm + 1e-6 * np.trace(lm) / lm.shape[0] * np.eye(lm.shape[0])  # K̄^T K̄ can be singular
        rm = kk.T @ r @ kk
        a_all = np.zeros((kk.shape[1], self.bits))
        for k in range(self.bits):
            evals, evecs = scipy.linalg.eigh((rm + rm.T) / 2, lm_reg)
            a0 = evecs[:, np.argmax(evals)]
            norm = float(a0 @ lm @ a0)
            if norm > 1e-12:  # a0 in the null space of K̄^T K̄ (tiny training sets) cannot be rescaled
                a0 = a0 * np.sqrt(l_count / norm)
            a_opt, _ = optimise_bit(a0, kk, r, self.max_iter)
            y0, y1 = sgn(kk @ a0), sgn(kk @ a_opt)
            if float(y1 @ r @ y1) > float(y0 @ r @ y0):
                a, y = a_opt, y1
                self.chosen.append("optimised")
            else:
                a, y = a0, y0
                self.chosen.append("init")
            a_all[:, k] = a
            r = r - np.outer(y, y)
            ky = kk.T @ y
            rm = rm - np.outer(ky, ky)  # K̄^T (R - y y^T) K̄ without recomputing the l x l product
            self.residual_trace.append(float((r * r).sum()))
        self.A = a_all
        return self

    def kernel(self, X: np.ndarray) -> np.ndarray:
        """Centred kernel features k̄(x) (n, m)."""
        return rbf(X, self.anchors, self.sigma) - self.mu

    def _project(self, X: np.ndarray) -> np.ndarray:
        return self.kernel(X) @ self.A

    def _params(self) -> dict[str, Any]:
        return {"anchors": self.n_anchors, "labelled": self.labelled, "max_iter": self.max_iter}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"anchors": self.anchors, "mu": self.mu, "A": self.A, "scalars": np.array([self.sigma])}

    def _set_state(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super()._set_state(params, arrays)
        self.sigma = float(arrays["scalars"][0])
