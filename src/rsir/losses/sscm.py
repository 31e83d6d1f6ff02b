"""SS-CM-RSIR objectives (Sumbul, Mueller, Demir, ICIP 2022, arXiv:2202.11429): self-supervised cross-modal
retrieval from co-registered pairs, no labels.

Three terms on the projections z1 (modality 1, e.g. Sentinel-1) and z2 (modality 2, e.g. Sentinel-2) of the same N
places, all measured by cosine similarity:

* inter-modal similarity preservation (mutual information): InfoNCE / NT-Xent over the 2N items [z1; z2]; the
  positive of item j is its cross-modal partner, the other 2N - 2 items are its negatives, temperature tau;
* inter-modal discrepancy elimination: M = mean_j log(1 + exp(cos(z1_j, z2_j))), entering the objective as -M so
  that the angle between paired embeddings decreases;
* intra-modal similarity: in each modality, each item's most similar *other* item in the batch (smallest Euclidean
  distance, itself excluded); s_m = mean_j cos(z^m_j, z^m_NN(j)); the objective holds -0.5 (s_1 + s_2), so this
  similarity is *increased*, as the paper states. The public RSiM port (DA4DTE ``duch.py``) adds +MSP instead,
  which decreases it; rsir follows the paper (../shared/METHODS.md section 4).

Where the two extra terms act (``terms_on``): on the projections h, like InfoNCE (``"projection"``, the default),
or on the encoder features f before the projection heads (``"encoder"``): the public RSiM port (DA4DTE
``duch.py``) computes NT-Xent on the projections but the discrepancy and intra-modal terms on the encoders'
outputs. The paper's text available here (its abstract) does not say which; both are offered and benchmarked.

Total: L = L_MIM - w_de * M - w_intra * 0.5 (s_1 + s_2) [+ w_q * quantisation]. The paper's weights are not
public; the DA4DTE port ramps w_de and w_intra geometrically from 1e-4 to 1 over training (``ramp=True``). The quantisation term
(mean (|h| - 1)^2 of the tanh outputs, pulling them towards the binary codes sign(h)) is rsir's addition, not part
of the published objective; its weight is 0 by default.

No labels enter any of these functions: they take the two embedding batches only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: the objective sets the ablations name: inter-modal only, + discrepancy, all three
TERM_SETS: dict[str, tuple[str, ...]] = {
    "mim": ("mim",),
    "mim+de": ("mim", "de"),
    "all": ("mim", "de", "intra"),
}


def inter_modal_infonce(z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """NT-Xent over the 2N items [z1; z2]: mean_j -log(exp(cos(j, j')/tau) / sum_{k != j} exp(cos(j, k)/tau))."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    sim = z @ z.T / tau
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def inter_modal_discrepancy(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """M = mean_j log(1 + exp(cos(z1_j, z2_j))); the objective subtracts it (the paired angle decreases)."""
    return F.softplus(F.cosine_similarity(z1, z2, dim=1)).mean()


def most_similar_cosine(z: torch.Tensor) -> torch.Tensor:
    """mean_j cos(z_j, z_NN(j)), NN(j) the nearest other item of the batch by Euclidean distance."""
    d = torch.cdist(z.detach(), z.detach())
    d.fill_diagonal_(float("inf"))
    nn_idx = d.argmin(dim=1)
    return F.cosine_similarity(z, z[nn_idx], dim=1).mean()


def quantisation(h: torch.Tensor) -> torch.Tensor:
    """mean (|h| - 1)^2 of tanh outputs: 0 when every output is already +-1 (rsir's addition)."""
    return ((h.abs() - 1.0) ** 2).mean()


@dataclass
class SSCMWeights:
    """Weights of the terms; ``terms`` picks the ablation (``mim``, ``mim+de`` or ``all``)."""

    tau: float = 0.5        # the CSMAE / CMMAE configs of the RSiM ports; the function default there is 0.07
    w_de: float = 1.0
    w_intra: float = 1.0
    w_quant: float = 0.0    # rsir's addition, off by default
    terms: str = "all"
    ramp: bool = False      # w_de and w_intra rise geometrically from 1e-4 x to 1 x over the epochs (DA4DTE port)
    terms_on: str = "projection"  # where de and intra act: "projection" (h) or "encoder" (f, the DA4DTE port)


#: where the discrepancy and intra-modal terms may act
TERMS_ON = ("projection", "encoder")


def ramp_factor(epoch: int, epochs: int, start: float = 1e-4) -> float:
    """The DA4DTE schedule of the discrepancy and intra-modal weights: geometric from ``start`` (epoch 0) to 1
    (the last epoch), i.e. np.logspace over ln as in the port."""
    if epochs <= 1:
        return 1.0
    return float(start ** (1.0 - epoch / (epochs - 1)))


class SSCMLoss(nn.Module):
    """The SS-CM-RSIR objective on a batch of paired projections; returns (total, parts)."""

    def __init__(self, weights: SSCMWeights | None = None) -> None:
        super().__init__()
        self.w = weights or SSCMWeights()
        if self.w.terms not in TERM_SETS:
            raise ValueError(f"unknown objective set {self.w.terms!r} (one of {', '.join(TERM_SETS)})")
        if self.w.terms_on not in TERMS_ON:
            raise ValueError(f"unknown place for the extra terms {self.w.terms_on!r} (one of {', '.join(TERMS_ON)})")
        self.terms = TERM_SETS[self.w.terms]
        self.scale = 1.0  # the ramp factor of the current epoch (1 without a ramp)

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Apply the weight ramp (when configured) for ``epoch`` of ``epochs``."""
        self.scale = ramp_factor(epoch, epochs) if self.w.ramp else 1.0

    @property
    def needs_features(self) -> bool:
        """Whether :meth:`forward` needs the encoder features f1, f2 (extra terms placed on the encoders)."""
        return self.w.terms_on == "encoder" and len(self.terms) > 1

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, f1: torch.Tensor | None = None,
                f2: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """z1, z2: the projections (InfoNCE, quantisation); f1, f2: the encoder features, where the discrepancy
        and intra-modal terms act when ``terms_on == "encoder"``."""
        if len(z1) < 2 or z1.shape != z2.shape:
            raise ValueError(f"SS-CM needs two paired batches of at least 2 items, got {tuple(z1.shape)} and "
                             f"{tuple(z2.shape)}")
        a1, a2 = z1, z2
        if self.needs_features:
            if f1 is None or f2 is None or len(f1) != len(z1) or f1.shape != f2.shape:
                raise ValueError("terms_on='encoder' needs the paired encoder features f1, f2 of the batch")
            a1, a2 = f1, f2
        mim = inter_modal_infonce(z1, z2, self.w.tau)
        total = mim
        parts = {"mim": float(mim.detach())}
        if "de" in self.terms:
            m = inter_modal_discrepancy(a1, a2)
            total = total - self.scale * self.w.w_de * m
            parts["de"] = float(m.detach())
        if "intra" in self.terms:
            s = 0.5 * (most_similar_cosine(a1) + most_similar_cosine(a2))
            total = total - self.scale * self.w.w_intra * s  # the paper's sign: similarity increased (the port adds it)
            parts["intra"] = float(s.detach())
        if self.w.w_quant:
            q = 0.5 * (quantisation(z1) + quantisation(z2))
            total = total + self.w.w_quant * q
            parts["quant"] = float(q.detach())
        return total, parts
