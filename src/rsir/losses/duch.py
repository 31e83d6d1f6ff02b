"""The DUCH objective (Mikriukov, Ravanbakhsh, Demir: "Deep Unsupervised Contrastive Hashing for Large-Scale
Cross-Modal Text-Image Retrieval in Remote Sensing", arXiv:2201.08125; ICASSP 2022 version arXiv:2204.08707).

With h_i1 = f_I(image), h_i2 = f_I(augmented image), h_t1 = f_T(caption), h_t2 = f_T(augmented caption) the
tanh outputs of a batch of N items and B the shared binary code of each training item:

    L = w1 NTX(h_i1, h_t1) + w2 NTX(h_i1, h_i2) + w3 NTX(h_t1, h_t2)       (inter-modal + two intra-modal terms)
        + alpha * L_adv + beta * L_Q + gamma * L_BB

- NTX: NT-Xent in SimCLR's form over the 2N cosine-normalised vectors z = [u; v], summed (not averaged) over
  all 2N anchors: -log( exp(cos(z_j, z_pos(j)) / tau) / (sum_{k != j} exp(cos(z_j, z_k) / tau) + eps) ).
- L_adv = -sum log sigma(D(h_t1)) - sum log sigma(D(h_i1)) (generator side of the adversarial game).
- L_Q = sum over the four outputs of ||B - h||_F^2.
- L_BB = sum over the four outputs of sum_j (sum_k h_jk)^2 (each code balanced over its own bits).
- Discriminator: -mean log sigma(D(h_t)) - mean log(1 - sigma(D(h_i))) + 10 mean (||grad D(x_hat)|| - 1)^2 with
  x_hat = u * h_t + (1 - u) * h_i, u uniform per element, all inputs detached; for both (t1, i1) and (t2, i2).

Weights as the authors' public code (configs/config.py) sets them: alpha 0.01, beta 0.001, gamma 0.01,
w = (1, 1, 1), tau = 1, eps = 1e-6 (../shared/METHODS.md section 3).

Two places where the public code and the paper differ, and which one rsir follows (the paper):
- the controller feeds the *original* caption as the augmented one (``txt2 = txt1``), so its intra-text term
  compares a caption with itself; rsir uses the augmented caption, as the paper describes;
- that commit calls the generator's adversarial term on (h_t1, h_t2), which leaves the image head out of the
  adversarial game; rsir puts the image codes in it (-log sigma(D(h_i1))), which is what makes the image codes
  indistinguishable from text codes, the term's stated purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ALPHA, BETA, GAMMA = 0.01, 0.001, 0.01
WEIGHTS = (1.0, 1.0, 1.0)
TAU, EPS = 1.0, 1e-6
GP_WEIGHT = 10.0


def nt_xent(u: torch.Tensor, v: torch.Tensor, tau: float = TAU, eps: float = EPS) -> torch.Tensor:
    """NT-Xent of paired rows (u_j, v_j), summed over the 2N anchors (negatives include the same view)."""
    z = F.normalize(torch.cat([u, v], 0), dim=1)
    n = u.shape[0]
    sim = z @ z.T / tau
    e = torch.exp(sim)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    denom = e.masked_fill(self_mask, 0.0).sum(1) + eps
    pos = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    num = sim[torch.arange(2 * n, device=z.device), pos]
    return (torch.log(denom) - num).sum()


def adversarial_loss(d_txt: torch.Tensor, d_img: torch.Tensor) -> torch.Tensor:
    """Generator side: -sum log sigma(D(h_t)) - sum log sigma(D(h_i)) from the discriminator's logits."""
    return -(F.logsigmoid(d_txt).sum() + F.logsigmoid(d_img).sum())


def quantization_loss(b: torch.Tensor, *hs: torch.Tensor) -> torch.Tensor:
    """sum over the outputs of ||B - h||_F^2 (B the batch's rows of the shared binary code)."""
    return sum((((b - h) ** 2).sum() for h in hs), torch.zeros((), device=b.device))


def bit_balance_loss(*hs: torch.Tensor) -> torch.Tensor:
    """sum over the outputs of sum_j (sum_k h_jk)^2."""
    return sum(((h.sum(1) ** 2).sum() for h in hs), torch.zeros((), device=hs[0].device))


def shared_code(h_i1: torch.Tensor, h_i2: torch.Tensor, h_t1: torch.Tensor, h_t2: torch.Tensor) -> torch.Tensor:
    """B = sign(((H_i1 + H_i2) / 2 + (H_t1 + H_t2) / 2) / 2), one row per item (an exact 0 becomes +1)."""
    s = torch.sign(((h_i1 + h_i2) / 2 + (h_t1 + h_t2) / 2) / 2)
    return torch.where(s == 0, torch.ones_like(s), s)


def discriminator_loss(disc: nn.Module, h_txt: torch.Tensor, h_img: torch.Tensor, gp_weight: float = GP_WEIGHT,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Text codes are "real", image codes "fake": BCE of both plus the WGAN-GP gradient penalty on per-element
    interpolations. Inputs are detached here."""
    t, i = h_txt.detach(), h_img.detach()
    real = -F.logsigmoid(disc(t)).mean()
    fake = -torch.log1p(-torch.sigmoid(disc(i)).clamp(max=1 - 1e-7)).mean()
    u = torch.rand(t.shape, generator=generator, device=t.device, dtype=t.dtype)
    x = (u * t + (1 - u) * i).requires_grad_(True)
    out = disc(x)
    (grad,) = torch.autograd.grad(out, x, grad_outputs=torch.ones_like(out), create_graph=True)
    gp = ((grad.reshape(len(grad), -1).norm(2, dim=1) - 1) ** 2).mean() * gp_weight
    return real + fake + gp


@dataclass
class DuchTerms:
    """The weighted generator terms of one batch (each already multiplied by its weight) and their sum."""

    inter: torch.Tensor
    intra_img: torch.Tensor
    intra_txt: torch.Tensor
    adversarial: torch.Tensor
    quantization: torch.Tensor
    bit_balance: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return (self.inter + self.intra_img + self.intra_txt + self.adversarial + self.quantization
                + self.bit_balance)

    def as_floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in
                ("inter", "intra_img", "intra_txt", "adversarial", "quantization", "bit_balance")}


@dataclass
class DuchLoss:
    """The generator objective with its weights; a weight of 0 switches a term off (the ablations)."""

    alpha: float = ALPHA
    beta: float = BETA
    gamma: float = GAMMA
    weights: tuple[float, float, float] = WEIGHTS
    tau: float = TAU

    def __call__(self, h_i1: torch.Tensor, h_i2: torch.Tensor, h_t1: torch.Tensor, h_t2: torch.Tensor,
                 b: torch.Tensor, disc: nn.Module | None) -> DuchTerms:
        zero = torch.zeros((), device=h_i1.device)
        w1, w2, w3 = self.weights
        inter = w1 * nt_xent(h_i1, h_t1, self.tau) if w1 else zero
        intra_i = w2 * nt_xent(h_i1, h_i2, self.tau) if w2 else zero
        intra_t = w3 * nt_xent(h_t1, h_t2, self.tau) if w3 else zero
        adv = self.alpha * adversarial_loss(disc(h_t1), disc(h_i1)) if self.alpha and disc is not None else zero
        q = self.beta * quantization_loss(b, h_i1, h_i2, h_t1, h_t2) if self.beta else zero
        bb = self.gamma * bit_balance_loss(h_i1, h_i2, h_t1, h_t2) if self.gamma else zero
        return DuchTerms(inter, intra_i, intra_t, adv, q, bb)
