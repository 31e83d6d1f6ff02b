"""Losses of joint compression and hashing (SCI-CBIR / RS-JCIF, METHODS.md section 8).

The hashing module is trained on the quantised latent of the codec with three terms:

- soft pairwise loss (DPSH's pairwise likelihood with a soft multi-label similarity s_ij in [0, 1]):
  ``mean_ij [ log(1 + exp(theta_ij)) - s_ij * theta_ij ]`` with ``theta_ij = 1/2 h_i . h_j`` over the pairs of a
  batch (i != j), h the tanh hash outputs in [-1, 1];
- bit balance: ``sum_k (mean_i h_ik)^2``: each bit is +1 on half of a batch;
- classification: multi-label binary cross-entropy of a linear classifier on the hash outputs.

The codec's objective is the rate-distortion loss ``R + lambda * D`` (R in bits per pixel from the entropy model's
likelihoods, D the mean squared error of the reconstruction).

:class:`UncertaintyWeights` is the automatic loss weighting of the joint stage (SCI-CBIR's "multistage learning
with automatic loss weighting"): the homoscedastic-uncertainty form of Kendall, Gal and Cipolla (CVPR 2018),
``sum_t exp(-s_t) L_t + s_t`` with one learned log-variance s_t per objective.
"""

from __future__ import annotations

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
