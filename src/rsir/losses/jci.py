"""Losses of joint compression and hashing (SCI-CBIR / RS-JCIF, METHODS.md section 8).

The hashing module is trained on the quantised latent of the codec with three terms:

- soft pairwise loss (DPSH's pairwise likelihood with a soft multi-label similarity s_ij in [0, 1]):
  ``mean_ij [ log(1 + exp(theta_ij)) - s_ij * theta_ij ]`` with ``theta_ij = 1/2 h_i . h_j`` over the pairs of a
  batch (i != j), h the tanh hash outputs in [-1, 1];
- bit balance: ``sum_k (mean_i h_ik)^2``: each bit is +1 on half of a batch;
- classification: multi-label binary cross-entropy of a linear classifier on the hash outputs.

The codec's objective is the rate-distortion loss ``R + lambda * D`` (R in bits per pixel from the entropy model's
likelihoods, D the mean squared error of the reconstruction).

How the joint stage combines the objectives (``rsir train-codec --weighting``):

- :class:`UncertaintyWeights`: homoscedastic-uncertainty weights of Kendall, Gal and Cipolla (CVPR 2018),
  ``sum_t exp(-s_t) L_t + s_t`` with one learned log-variance s_t = log sigma_t^2 per objective. Kendall et al.
  write ``L_t / (2 sigma_t^2) + log sigma_t`` (regression), which is exactly half of this: the same optimum
  (exp(-s_t) = 1 / L_t, hence the same relative weights) and, with Adam, the same steps.
- :func:`pcgrad`: gradient surgery (PCGrad, Yu et al., NeurIPS 2020): each objective's gradient loses its
  component along any other objective's gradient it conflicts with (negative inner product), in a random order,
  and the projected gradients are summed. The SCI-CBIR code credits the PCGrad implementation
  WeiChengTseng/Pytorch-PCGrad; RS-JCIF's "gradient manipulation" is of this kind.
- :func:`min_norm_weights`: MGDA (Sener and Koltun, NeurIPS 2018): the weights of the minimum-norm point of the
  convex hull of the objectives' gradients, a common descent direction of all objectives. The
  SCI-CBIR code credits intel-isl/MultiObjectiveOptimization (MGDA-UB: the gradients are taken with respect to
  the shared representation, here the quantised latent).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F


def soft_similarity(labels_a: torch.Tensor, labels_b: torch.Tensor | None = None) -> torch.Tensor:
    """Soft multi-label similarity: |l_i AND l_j| / |l_i OR l_j| (Jaccard), 0 when both label sets are empty."""
    a = labels_a.float()
    b = a if labels_b is None else labels_b.float()
    inter = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))


def soft_pairwise_loss(h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over ordered pairs i != j of ``softplus(theta_ij) - s_ij theta_ij``, theta = h h^T / 2."""
    n = h.shape[0]
    if n < 2:
        return h.sum() * 0.0
    theta = 0.5 * (h @ h.T)
    s = soft_similarity(labels)
    per_pair = F.softplus(theta) - s * theta
    off = ~torch.eye(n, dtype=torch.bool, device=h.device)
    return per_pair[off].mean()


def bit_balance_loss(h: torch.Tensor) -> torch.Tensor:
    """``sum_k (mean_i h_ik)^2``: zero when every bit is +1 on half of the batch."""
    return (h.mean(0) ** 2).sum()


def quantisation_loss(h: torch.Tensor) -> torch.Tensor:
    """``mean_ik (|h_ik| - 1)^2``: pulls the tanh outputs to +-1. rsir's addition (DPSH / DUCH style), not in the
    SCI-CBIR / RS-JCIF loss lists; the joint stage uses it only when asked (``--quantisation``)."""
    return ((h.abs() - 1) ** 2).mean()


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Multi-label binary cross-entropy (mean over items and classes)."""
    return F.binary_cross_entropy_with_logits(logits, labels.float())


def rate_bpp(likelihoods: torch.Tensor, n_pixels: int) -> torch.Tensor:
    """Bits per pixel of a batch: ``-sum log2 p(y_hat) / (N * H * W)`` (n_pixels = N * H * W)."""
    return -torch.log(likelihoods.clamp_min(1e-9)).sum() / (math.log(2.0) * n_pixels)


def rate_distortion_loss(likelihoods: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor,
                         lmbda: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(R + lambda D, R in bits per pixel, D = MSE) for a batch of N x C x H x W images."""
    n, _, hh, ww = x.shape
    r = rate_bpp(likelihoods, n * hh * ww)
    d = F.mse_loss(x_hat, x)
    return r + lmbda * d, r, d


class UncertaintyWeights(torch.nn.Module):
    """Automatic loss weighting: ``sum_t exp(-s_t) L_t + s_t`` with learned log-variances ``s_t`` (init 0)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = list(names)
        self.log_vars = torch.nn.Parameter(torch.zeros(len(names)))

    def forward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        total = self.log_vars.sum() * 0.0
        for k, name in enumerate(self.names):
            total = total + torch.exp(-self.log_vars[k]) * losses[name] + self.log_vars[k]
        return total

    def weights(self) -> dict[str, float]:
        """The current weights exp(-s_t) by objective name."""
        return {n: float(torch.exp(-v)) for n, v in zip(self.names, self.log_vars.detach(), strict=True)}


def pcgrad(grads: list[torch.Tensor], order: list[list[int]] | None = None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """PCGrad: ``sum_i g_i'`` where g_i' is g_i projected, for each other j in turn, off g_j when g_i' . g_j < 0.

    ``grads`` are flat per-objective gradients; ``order[i]`` the order of the other objectives for i (random,
    from ``generator``, when not given). Projections are onto the original gradients g_j, as in Yu et al.
    """
    n = len(grads)
    out = torch.zeros_like(grads[0])
    for i in range(n):
        if order is not None:
            others = order[i]
        else:
            others = [j for j in torch.randperm(n, generator=generator).tolist() if j != i]
        g = grads[i].clone()
        for j in others:
            dot = torch.dot(g, grads[j])
            nj = torch.dot(grads[j], grads[j])
            if dot < 0 and nj > 0:
                g = g - dot / nj * grads[j]
        out = out + g
    return out


def min_norm_weights(grads: list[torch.Tensor]) -> torch.Tensor:
    """Weights alpha on the simplex minimising ``||sum_t alpha_t g_t||`` (the MGDA subproblem).

    Sener and Koltun solve it with Frank-Wolfe; with a handful of objectives it is solved exactly here: for every
    support set S the equality-constrained minimum (KKT system of the Gram matrix, least squares when singular),
    keeping the feasible (non-negative) solution of least norm. The problem is convex: the same point.
    """
    g = torch.stack([x.reshape(-1).double() for x in grads])
    gram = g @ g.T
    n = len(grads)
    best, best_val = torch.full((n,), 1.0 / n, dtype=torch.float64), math.inf
    for k in range(1, n + 1):
        for sub in itertools.combinations(range(n), k):
            idx = torch.tensor(sub)
            kkt = torch.zeros(k + 1, k + 1, dtype=torch.float64)
            kkt[:k, :k] = gram[idx][:, idx]
            kkt[:k, k] = 1.0
            kkt[k, :k] = 1.0
            rhs = torch.zeros(k + 1, dtype=torch.float64)
            rhs[k] = 1.0
            sol = torch.linalg.lstsq(kkt, rhs[:, None], driver="gelsd").solution[:k, 0]
            if (sol < -1e-12).any() or abs(float(sol.sum()) - 1) > 1e-9:
                continue
            alpha = torch.zeros(n, dtype=torch.float64)
            alpha[idx] = sol.clamp_min(0.0)
            alpha = alpha / alpha.sum()
            val = float(alpha @ gram @ alpha)
            if val < best_val - 1e-15:
                best, best_val = alpha, val
    return best.float()
