"""SS-CM-RSIR as a method: the recipe the training loop runs, and ``train_sscm`` (what `rsir train --method ss-cm`
calls). Labels are never read: pairs come from :class:`rsir.train.pairs.PairDataset` (no label key), model
selection is the label-free partner MRR on a seeded slice of the training pairs held out of the gradient steps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsir.data.archive import Archive
from rsir.errors import RsirError
from rsir.losses.sscm import TERM_SETS, SSCMLoss, SSCMWeights
from rsir.models.crossmodal import (
    CrossModalConfig,
    CrossModalMeta,
    CrossModalNet,
    ModalityMeta,
    save_crossmodal,
)
from rsir.models.resnet import ResNetConfig
from rsir.train.loop import History, TrainConfig, fit, resolve_device, seed_everything
from rsir.train.pairs import PairDataset, paired_positions, partner_mrr
from rsir.train.selection import split_for_selection

SELECTION_KEY = "sel_partner_mrr"


@dataclass
class SSCMOptions:
    """What `rsir train --method ss-cm` may change."""

    bits: int = 64
    modalities: tuple[str, str] = ("s1", "s2")
    width: int = 16
    blocks: tuple[int, ...] = (1, 1, 1)
    hidden: int = 256
    weights: SSCMWeights | None = None
    preload: bool | None = None
    augment: bool = True


class SSCMRecipe:
    """Two encoders + heads trained with the SS-CM objective; ``selection_score`` is the label-free partner MRR."""

    name = "ss-cm"
    metric = "hamming"
    default_lr = 1e-3            # rsir's choice for encoders trained from scratch (Mueller's code: 1e-4, ResNet-50)
    default_batch_size = 128

    def __init__(self, config: CrossModalConfig, weights: SSCMWeights | None = None,
                 selection: PairDataset | None = None) -> None:
        self.model = CrossModalNet(config)
        self.m1, self.m2 = config.modalities[:2]
        self.objective = SSCMLoss(weights)
        self.selection = selection

    @property
    def net(self) -> CrossModalNet:
        return self.model

    def optimizer(self, lr: float | None) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=lr or self.default_lr)

    def set_epoch(self, epoch: int, epochs: int) -> None:
        self.objective.set_epoch(epoch, epochs)

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        f1 = self.model.encoders[self.m1](batch["x"])
        f2 = self.model.encoders[self.m2](batch["x2"])
        z1 = self.model.heads[self.m1](f1).float()
        z2 = self.model.heads[self.m2](f2).float()
        if self.objective.needs_features:
            return self.objective(z1, z2, f1.float(), f2.float())
        return self.objective(z1, z2)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.m2)

    @torch.no_grad()
    def outputs(self, ds: PairDataset, device: torch.device, batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
        """tanh outputs of both modalities of a pair dataset, in eval mode."""
        self.model.eval()
        h1, h2 = [], []
        for s in range(0, len(ds), batch):
            items = [ds[i] for i in range(s, min(s + batch, len(ds)))]
            h1.append(self.model(torch.stack([it["x"] for it in items]).to(device), self.m1).float().cpu())
            h2.append(self.model(torch.stack([it["x2"] for it in items]).to(device), self.m2).float().cpu())
        return torch.cat(h1).numpy(), torch.cat(h2).numpy()

    def selection_score(self, device: torch.device) -> tuple[str, float] | None:
        """(key, partner MRR of the selection slice), or None without a slice."""
        if self.selection is None or len(self.selection) < 2:
            return None
        return SELECTION_KEY, partner_mrr(*self.outputs(self.selection, device))


def crossmodal_config(archive: Archive, opts: SSCMOptions) -> CrossModalConfig:
    """Encoders sized for the archive's band counts, in pair order."""
    return CrossModalConfig({m: ResNetConfig(len(archive.spec(m).bands), opts.width, list(opts.blocks))
                             for m in opts.modalities}, opts.bits, opts.hidden)


def _meta(archive: Archive, opts: SSCMOptions, info: dict[str, Any]) -> CrossModalMeta:
    mods = {}
    for m in opts.modalities:
        spec = archive.spec(m)
        mean, std = archive.band_stats(m)
        mods[m] = ModalityMeta(list(spec.bands), mean, std, spec.grid[0])
    home = archive.primary_modality if archive.primary_modality in opts.modalities else opts.modalities[-1]
    return CrossModalMeta(mods, home, list(archive.nomenclature.classes), info)


def train_sscm(archive: Archive, out: Path, cfg: TrainConfig, opts: SSCMOptions) -> tuple[Path, History]:
    """Train SS-CM on the archive's training pairs (all pairs when it has no training split) and save the model."""
    w = opts.weights or SSCMWeights()
    if w.terms not in TERM_SETS:
        raise RsirError(f"unknown objective set {w.terms!r} (one of {', '.join(TERM_SETS)})")
    if opts.bits <= 0:
        raise RsirError("ss-cm needs --bits > 0")
    splits = set(archive.catalog["split"].astype(str))
    split = "train" if "train" in splits else None
    pos = paired_positions(archive, list(opts.modalities), archive.split_positions(split))
    # the slice every rsir method holds out (rsir.train.selection: keyed hash of the ids, seeded, a fraction of
    # the training split), here scored without labels
    held, selection = split_for_selection([archive.ids[int(p)] for p in pos], split, cfg.selection_fraction,
                                          cfg.selection_seed)
    train_pos, sel_pos = pos[~held], pos[held]
    if len(train_pos) < 2:
        raise RsirError(f"archive {archive.path}: ss-cm needs at least 2 training pairs, found {len(train_pos)}")
    train = PairDataset(archive, list(opts.modalities), train_pos, opts.preload, opts.augment, cfg.seed)
    sel = PairDataset(archive, list(opts.modalities), sel_pos, opts.preload, False) if len(sel_pos) >= 2 else None
    seed_everything(cfg.seed)
    recipe = SSCMRecipe(crossmodal_config(archive, opts), w, sel)
    bs = cfg.batch_size or recipe.default_batch_size
    cfg = replace(cfg, batch_size=max(2, min(bs, len(train_pos))))
    hist = fit(recipe, train, cfg)
    device = resolve_device(cfg.device)
    info: dict[str, Any] = {
        "method": "ss-cm", "archive": str(archive.path), "bits": opts.bits, "modalities": list(opts.modalities),
        "objective": {"terms": list(TERM_SETS[w.terms]), "tau": w.tau, "w_de": w.w_de, "w_intra": w.w_intra,
                      "w_quant_rsir": w.w_quant, "ramp": w.ramp,
                      "terms_on": w.terms_on},
        "intra_modal_sign": "paper (similarity increased); the DA4DTE port adds +MSP",
        "train_split": split or "all", "train_pairs": int(len(train_pos)), "augment": opts.augment,
        "selection": {**selection.to_json(),
                      "metric": "partner MRR within the slice (Hamming on sign codes, both directions; no labels)",
                      "scored": len(sel_pos) >= 2},
        "best_epoch": hist.best_epoch, "best_selection_score": hist.best_map if hist.best_map >= 0 else None,
        "history": hist.epochs, "labels_used": False, "batch_size": cfg.batch_size,
        "lr": cfg.lr or recipe.default_lr, "epochs": cfg.epochs,
    }
    train.augment = False
    sub = torch.utils.data.Subset(train, range(min(2000, len(train))))
    h1, h2 = recipe.outputs(sub, device)  # type: ignore[arg-type]
    info["distinct_codes_train"] = {m: int(len(np.unique(np.packbits(h > 0, axis=1), axis=0)))
                                    for m, h in zip(opts.modalities, (h1, h2), strict=True)}
    path = save_crossmodal(out, recipe.model.cpu(), _meta(archive, opts, info))
    return path, hist
