"""Recipes: a method = network + loss + miner + optimiser, in the form the one training loop runs."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rsir.errors import RsirError
from rsir.losses.classification import FocalLoss, MultiLabelBCE
from rsir.losses.milan import MilanLoss
from rsir.losses.triplet import SquaredEuclidean
from rsir.miners import (
    BatchHardMiner,
    FixedTripletMiner,
    MultiLabelDiverseMiner,
    RandomTripletMiner,
    RelevanceFirstDiverseMiner,
    SemiHardMiner,
)
from rsir.models.heads import MilanHashHead
from rsir.models.net import NetConfig, RetrievalNet

SAMPLERS = ("random", "batch-hard", "semi-hard", "diverse", "diverse-rf", "milan-pairs")


def make_miner(name: str, seed: int = 0, margin: float = 0.2) -> Any:
    """A triplet miner by name; distances are those of the MiLAN triplet term (normalised, squared L2)."""
    dist = SquaredEuclidean(normalize=True)
    if name == "random":
        return RandomTripletMiner(per_anchor=1, seed=seed)
    if name == "batch-hard":
        return BatchHardMiner(dist)
    if name == "semi-hard":
        return SemiHardMiner(margin, dist)  # the band of the MiLAN triplet term's own margin
    if name == "diverse":
        return MultiLabelDiverseMiner(anchor_fraction=0.5, n_pos=2, n_neg=2, distance=dist, seed=seed)
    if name == "diverse-rf":
        return RelevanceFirstDiverseMiner(anchor_fraction=0.5, n_pos=2, n_neg=2, distance=dist, seed=seed)
    if name == "milan-pairs":
        return FixedTripletMiner()
    raise RsirError(f"unknown sampler {name!r} (one of {', '.join(SAMPLERS)})")


class ClassifierRecipe:
    """Multi-label classifier (BCE or focal loss); its pooled penultimate features are the float features."""

    name = "classifier"
    metric = "ip"
    default_lr = 1e-3
    default_batch_size = 64

    def __init__(self, config: NetConfig, loss: str = "bce") -> None:
        if config.n_classes <= 0:
            raise RsirError("the classifier needs labelled data (the archive has no classes)")
        self.net = RetrievalNet(config)
        if loss not in ("bce", "focal"):
            raise RsirError(f"unknown classification loss {loss!r} (bce or focal)")
        self.criterion: nn.Module = MultiLabelBCE() if loss == "bce" else FocalLoss()

    def optimizer(self, lr: float | None) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=lr or self.default_lr)

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.net(batch["x"])["logits"]
        return self.criterion(logits.float(), batch["label"]), {}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["features"]


class _MilanObjective:
    metric = "hamming"
    default_lr = 1e-4                    # MHCLN: Adam(1e-4, beta1 0.5, beta2 0.9)
    default_batch_size = 90              # MHCLN: 30 triplets per batch
    net: nn.Module

    def __init__(self, sampler: str = "random", margin: float = 0.2, beta: float = 0.001, gamma: float = 1.0,
                 seed: int = 0) -> None:
        self.sampler = sampler
        self.miner = make_miner(sampler, seed, margin)
        self.objective = MilanLoss(margin, beta, gamma)

    def optimizer(self, lr: float | None) -> torch.optim.Optimizer:
        params = [p for p in self.net.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=lr or self.default_lr, betas=(0.5, 0.9))

    def hash_outputs(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        h = self.hash_outputs(batch["x"]).float()
        idx = self.miner(h, batch["label"])
        total, parts = self.objective(h, idx)
        parts["triplets"] = float(len(idx[0]))
        return total, parts

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.hash_outputs(x)


class MilanRecipe(_MilanObjective):
    """MiLAN as published: only the 3-layer hash head is trained, on frozen features given as input."""

    name = "milan"

    def __init__(self, in_dim: int, bits: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.net = MilanHashHead(in_dim, bits)

    def hash_outputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MilanE2ERecipe(_MilanObjective):
    """MiLAN objective with the image encoder trained too ("milan-e2e"), on augmented image batches."""

    name = "milan-e2e"

    def __init__(self, config: NetConfig, **kw: Any) -> None:
        super().__init__(**kw)
        if config.bits <= 0:
            raise RsirError("milan-e2e needs --bits > 0")
        self.model = RetrievalNet(config)
        self.net = self.model

    def hash_outputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["hash"]
