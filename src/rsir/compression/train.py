"""Staged training of the joint codec (SCI-CBIR's multistage procedure).

Stage 1 (codec): g_a, g_s and the entropy model minimise the rate-distortion loss R + lambda D (additive uniform
noise in place of rounding). Stage 2 (joint): every part, hashing head and classifier included, minimises the
four objectives {R + lambda D, soft pairwise, bit balance, classification}; the hashing losses reach g_a through
the latent, so the representation is shaped for both compression and retrieval. How the objectives are combined
is ``weighting`` (:mod:`rsir.losses.jci`):

- ``uncertainty``: learned homoscedastic-uncertainty weights (Kendall et al.), one backward pass;
- ``pcgrad``: gradient surgery on the per-objective gradients of all parameters (four backward passes);
- ``mgda``: MGDA-UB, min-norm weights alpha from the per-objective gradients g_t with respect to the quantised
  latent (the shared representation), each divided by its l2 norm (the ``l2`` normalisation of the reference
  code; without it the smallest gradient, classification's, took 99 % of the weight and the codec's rate-distortion
  loss rose fourfold in two epochs), then one backward pass of ``sum_t alpha_t L_t / ||g_t||``.

``quantisation`` > 0 adds a fifth objective, beta * mean_ik (|h_ik| - 1)^2: rsir's own addition (the papers'
abstracts name only the pairwise, bit-balance and classification losses), against the collapse of h towards 0.

The fixed-point coding tables are built from the final entropy model before the codec is saved.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsir.compression.codec import DOWNSCALE, CodecConfig, CodecError, CodecMeta, JointNet, save_codec
from rsir.data.archive import Archive, open_archive
from rsir.losses.jci import (
    UncertaintyWeights,
    bit_balance_loss,
    classification_loss,
    min_norm_weights,
    pcgrad,
    quantisation_loss,
    rate_distortion_loss,
    soft_pairwise_loss,
)
from rsir.train.data import dihedral_batch
from rsir.train.selection import RULE, selection_slice
from rsir.train.validation import validation_map

OBJECTIVES = ["rd", "pairwise", "balance", "classification"]
WEIGHTINGS = {"uncertainty": "uncertainty (Kendall et al. 2018), learned in the joint stage",
              "pcgrad": "PCGrad gradient surgery (Yu et al. 2020) on the per-objective gradients",
              "mgda": "MGDA-UB min-norm weights (Sener and Koltun 2018) from l2-normalised gradients w.r.t. the "
                      "latent"}


@dataclass
class CodecTrainConfig:
    bits: int = 64
    lmbda: float = 64.0
    codec_epochs: int = 10
    joint_epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    n_filters: int = 64
    latent: int = 32
    seed: int = 0
    max_items: int | None = None
    modality: str | None = None
    #: a codec directory whose transforms and entropy model start stage 2 (its stage 1 reused; codec_epochs 0)
    init: str | None = None
    #: how the joint stage combines the objectives: one of WEIGHTINGS
    weighting: str = "uncertainty"
    #: rsir's addition, not in the papers: > 0 adds beta * quantisation_loss(h) as a fifth objective
    quantisation: float = 0.0
    #: the hashing head on the latent (CodecConfig.head: "conv" or "resnet") and its width / blocks per stage
    head: str = "conv"
    head_width: int = 128
    head_blocks: tuple[int, ...] = (2,)
    #: > 0: leave out the model-selection slice of rsir.train.selection (this fraction of the train split, the
    #: slice rsir train holds out for MiLAN and the classifier), so epochs can be chosen on it like theirs
    selection_fraction: float = 0.0
    #: random flips and 90-degree rotations of the training patches (rsir train's augmentation)
    augment: bool = False
    #: with selection_fraction > 0: stop the joint stage after this many epochs without a better selection score
    patience: int = 5


def training_positions(arch: Archive, max_items: int | None = None, seed: int = 0,
                       selection_fraction: float = 0.0) -> np.ndarray:
    """Archive positions the codec trains on: the train split (all items without one) less, when
    ``selection_fraction`` > 0, the model-selection slice of :func:`rsir.train.selection.selection_slice` (seed
    0, as rsir train), at most ``max_items`` of them drawn with ``seed``; the rest is held out from the codec."""
    pos = arch.split_positions("train")
    if len(pos) == 0:
        pos = np.arange(len(arch))
    if selection_fraction > 0:
        pos = pos[~selection_slice([arch.ids[int(p)] for p in pos], selection_fraction)]
    if max_items is not None and len(pos) > max_items:
        pos = np.sort(np.random.default_rng(seed).choice(pos, max_items, replace=False))
    return np.asarray(pos)


def load_images(arch: Archive, modality: str, positions: np.ndarray) -> np.ndarray:
    """Normalised N x C x H x W images of archive positions."""
    return np.concatenate([x for _, x in arch.batches(256, modality=modality, positions=positions.tolist())])


def load_training_data(arch: Archive, modality: str, max_items: int | None = None,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Normalised images of :func:`training_positions` and their multi-hot labels."""
    pos = training_positions(arch, max_items, seed)
    return load_images(arch, modality, pos), arch.labels[pos]


#: an epoch whose mean rate-distortion loss exceeds this multiple of the stage's best epoch has diverged
DIVERGED = 10.0


class DivergenceGuard:
    """Keeps the weights of a stage's best epoch (lowest mean rate-distortion loss) and tells when an epoch's
    loss exceeds ``factor`` x that best: the stage has diverged (a loss can explode and stay finite, which the
    per-batch finiteness check does not catch), and the best epoch's weights are put back."""

    def __init__(self, net: torch.nn.Module, factor: float = DIVERGED) -> None:
        self.net, self.factor = net, factor
        self.best, self.best_epoch = math.inf, 0
        self.state: dict[str, torch.Tensor] | None = None

    def diverged(self, epoch: int, loss: float) -> bool:
        """Record one epoch's mean loss; True (and the best weights restored) when it has diverged."""
        if loss < self.best:
            self.best, self.best_epoch = loss, epoch
            self.state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            return False
        if self.state is not None and not loss <= self.factor * self.best:  # NaN counts as diverged
            self.net.load_state_dict(self.state)
            return True
        return False


class EpochSelection:
    """The joint stage's epoch choice on rsir train's model-selection slice (rsir.train.selection): after every
    epoch, mAP@20 (A) of the slice's codes (rounded latents, as a bitstream holds them) against the whole training
    split, query left out (rsir.train.validation, the score MiLAN and the classifier are chosen by); keeps the best
    epoch's weights and tells when ``patience`` epochs have passed without a better one."""

    def __init__(self, net: JointNet, arch: Archive, modality: str, fit: tuple[np.ndarray, np.ndarray],
                 fraction: float, patience: int) -> None:
        train = arch.split_positions("train")
        self.sel_pos = train[selection_slice([arch.ids[int(p)] for p in train], fraction)]
        self.fit_pos, self.fit_x = fit
        self.sel_x = load_images(arch, modality, self.sel_pos)
        self.labels = arch.labels
        self.net, self.patience = net, patience
        self.best, self.best_epoch = -math.inf, 0
        self.state: dict[str, torch.Tensor] | None = None

    def codes(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            h = torch.cat([self.net.hash(self.net.quantise(self.net.g_a(torch.from_numpy(x[s:s + 256]))))
                           for s in range(0, len(x), 256)])
        return (h > 0).float().numpy()

    def score(self, epoch: int) -> tuple[float, bool]:
        """(the epoch's selection mAP@20, whether to stop now)."""
        qs = self.codes(self.sel_x)
        db = np.concatenate([self.codes(self.fit_x), qs])
        db_pos = np.concatenate([self.fit_pos, self.sel_pos])
        m = validation_map(qs, self.labels[self.sel_pos], self.sel_pos, db, self.labels[db_pos], db_pos, "hamming")
        if m > self.best:
            self.best, self.best_epoch = m, epoch
            self.state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        return m, epoch - self.best_epoch >= self.patience

    def restore(self) -> None:
        if self.state is not None:
            self.net.load_state_dict(self.state)


def train_codec(archive: Archive | str | Path, out: str | Path, cfg: CodecTrainConfig | None = None,
                log: Callable[[str], None] | None = None,
                on_epoch: Callable[[str, int, JointNet], dict[str, Any] | None] | None = None) -> Path:
    """Train a joint codec on an archive's training split in two stages and save it at ``out``.

    ``on_epoch(stage, epoch, net)``, when given, runs after every epoch (the net in eval mode; it must not
    change it) and what it returns is added to that epoch's record in the training history (used to choose the
    number of epochs on held-out data)."""
    cfg = cfg or CodecTrainConfig()
    arch = archive if isinstance(archive, Archive) else open_archive(archive)
    spec = arch.spec(cfg.modality)
    if spec.grid[0] % DOWNSCALE or spec.grid[1] % DOWNSCALE:
        raise CodecError(f"the codec downsamples by {DOWNSCALE}: the {spec.name} grid {spec.grid} is not a multiple")
    if cfg.bits % 8 or cfg.bits <= 0:
        raise CodecError(f"bits must be a positive multiple of 8 (got {cfg.bits})")
    if cfg.weighting not in WEIGHTINGS:
        raise CodecError(f"unknown weighting {cfg.weighting!r}: one of {', '.join(WEIGHTINGS)}")
    torch.manual_seed(cfg.seed)
    fit_pos = training_positions(arch, cfg.max_items, cfg.seed, cfg.selection_fraction)
    x_all, y_all = load_images(arch, spec.name, fit_pos), arch.labels[fit_pos]
    x_t, y_t = torch.from_numpy(x_all), torch.from_numpy(y_all.astype(np.float32))
    net = JointNet(CodecConfig(in_channels=len(spec.bands), n_filters=cfg.n_filters, latent=cfg.latent,
                               bits=cfg.bits, n_classes=len(arch.nomenclature), head_width=cfg.head_width,
                               head=cfg.head, head_blocks=list(cfg.head_blocks)))
    if cfg.init is not None:
        from rsir.compression.codec import load_codec

        base = load_codec(cfg.init)
        base.check_spec(spec.bands, spec.grid, spec.dtype, f"archive {arch.path} ({spec.name})")
        if (base.net.cfg.n_filters, base.net.cfg.latent) != (cfg.n_filters, cfg.latent):
            raise CodecError(f"--init {cfg.init} has {base.net.cfg.n_filters} filters and {base.net.cfg.latent} "
                             f"latent channels, not {cfg.n_filters} and {cfg.latent}")
        state = {k: v for k, v in base.net.state_dict().items() if k.split(".")[0] in ("g_a", "g_s", "entropy")}
        net.entropy.table = torch.zeros_like(state["entropy.table"])
        net.load_state_dict(state, strict=False)
    objectives = OBJECTIVES + (["quantisation"] if cfg.quantisation > 0 else [])
    weights = UncertaintyWeights(objectives)
    history: list[dict[str, Any]] = []
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()

    def joint_step(parts: dict[str, torch.Tensor], y_hat: torch.Tensor, params: list[torch.nn.Parameter],
                   acc: dict[str, float]) -> torch.Tensor:
        """Set the gradients of the joint stage's combination of the objectives; returns the combined loss."""
        if cfg.weighting == "uncertainty":
            loss = weights(parts)
            loss.backward()
            return loss
        if cfg.weighting == "mgda":
            grads = [torch.autograd.grad(parts[k], y_hat, retain_graph=True)[0] for k in objectives]
            norms = [float(g.norm()) + 1e-12 for g in grads]  # l2 normalisation (see WEIGHTINGS)
            alpha = min_norm_weights([g / n for g, n in zip(grads, norms, strict=True)])
            scale = [a / n for a, n in zip(alpha.tolist(), norms, strict=True)]
            for k, a in zip(objectives, alpha.tolist(), strict=True):
                acc[f"w_{k}"] = acc.get(f"w_{k}", 0.0) + a
            loss = sum((c * parts[k] for k, c in zip(objectives, scale, strict=True)), y_hat.sum() * 0)
            loss.backward()
            return loss
        flat = []
        for k in objectives:
            gs = torch.autograd.grad(parts[k], params, retain_graph=True, allow_unused=True)
            flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                   for g, p in zip(gs, params, strict=True)]))
        merged = pcgrad(flat, generator=gen)
        for a in range(len(flat)):
            for b in range(a + 1, len(flat)):
                acc["conflicts"] = acc.get("conflicts", 0.0) + float(torch.dot(flat[a], flat[b]) < 0)
        offset = 0
        for p in params:
            p.grad = merged[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        return sum((parts[k] for k in objectives), y_hat.sum() * 0)

    def run_stage(stage: str, epochs: int, params: list[torch.nn.Parameter]) -> None:
        opt = torch.optim.Adam(params, lr=cfg.lr)
        guard = DivergenceGuard(net)
        net_params = [p for p in params if any(p is q for q in net.parameters())]
        for ep in range(epochs):
            net.train()
            perm = torch.randperm(len(x_t), generator=gen)
            sums: dict[str, float] = {}
            acc: dict[str, float] = {}
            nb = 0
            for s in range(0, len(perm) - 1, cfg.batch_size):
                idx = perm[s:s + cfg.batch_size]
                if len(idx) < 2:
                    continue
                xb, yb = x_t[idx], y_t[idx]
                if cfg.augment:
                    xb = dihedral_batch(xb, torch.randint(0, 8, (len(idx),), generator=gen))
                out = net(xb, noise=True)
                rd, r, d = rate_distortion_loss(out["likelihoods"], xb, out["x_hat"], cfg.lmbda)
                parts = {"rd": rd, "bpp": r, "mse": d}
                opt.zero_grad(set_to_none=True)
                if stage == "codec":
                    loss = rd
                    if not torch.isfinite(loss):
                        raise CodecError(f"{stage} stage, epoch {ep + 1}: the loss is not finite")
                    loss.backward()
                else:
                    parts.update(pairwise=soft_pairwise_loss(out["h"], yb), balance=bit_balance_loss(out["h"]),
                                 classification=classification_loss(out["logits"], yb))
                    if cfg.quantisation > 0:
                        parts["quantisation"] = cfg.quantisation * quantisation_loss(out["h"])
                    if not all(torch.isfinite(parts[k]) for k in objectives):
                        raise CodecError(f"{stage} stage, epoch {ep + 1}: the loss is not finite")
                    joint_step(parts, out["y_hat"], net_params, acc)
                    acc["h_abs"] = acc.get("h_abs", 0.0) + float(out["h"].detach().abs().mean())
                opt.step()
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                nb += 1
            rec = {"stage": stage, "epoch": ep + 1, **{k: round(v / max(nb, 1), 5) for k, v in sums.items()},
                   "seconds": round(time.perf_counter() - t0, 1)}
            if stage == "joint":
                rec["h_abs"] = round(acc.pop("h_abs", 0.0) / max(nb, 1), 5)
                if cfg.weighting == "uncertainty":
                    rec["weights"] = {k: round(v, 4) for k, v in weights.weights().items()}
                elif cfg.weighting == "mgda":
                    rec["weights"] = {k: round(acc.get(f"w_{k}", 0.0) / max(nb, 1), 4) for k in objectives}
                else:
                    rec["conflicting_pairs"] = round(acc.get("conflicts", 0.0) / max(nb, 1), 3)
            if on_epoch is not None:
                net.eval()
                with torch.inference_mode():
                    rec.update(on_epoch(stage, ep + 1, net) or {})
            patience_over = False
            if stage == "joint" and selection is not None:
                net.eval()
                sel_map, patience_over = selection.score(ep + 1)
                rec["selection_map20"] = round(sel_map, 5)
            stop = guard.diverged(ep + 1, sums.get("rd", math.nan) / max(nb, 1))
            if stop:
                rec["diverged"] = (f"rate-distortion loss over {DIVERGED:g}x epoch {guard.best_epoch}'s: the {stage} "
                                   f"stage stopped with epoch {guard.best_epoch}'s weights (a lower --lr may help)")
            history.append(rec)
            if log:
                log(" ".join(f"{k}={v}" for k, v in rec.items()))
            if stop:
                return
            if patience_over:
                if log:
                    log(f"no better selection mAP@20 for {cfg.patience} epochs: the joint stage stops")
                return

    selection: EpochSelection | None = None
    codec_params = [p for n, p in net.named_parameters() if n.split(".")[0] in ("g_a", "g_s", "entropy")]
    run_stage("codec", cfg.codec_epochs, codec_params)
    joint_params = list(net.parameters()) + (list(weights.parameters()) if cfg.weighting == "uncertainty" else [])
    selection = (EpochSelection(net, arch, spec.name, (fit_pos, x_all), cfg.selection_fraction, cfg.patience)
                 if cfg.selection_fraction > 0 and cfg.joint_epochs > 0 else None)
    run_stage("joint", cfg.joint_epochs, joint_params)
    chosen: dict[str, Any] = {}
    if selection is not None:
        selection.restore()
        chosen = {"chosen_joint_epoch": selection.best_epoch, "selection_map20": round(selection.best, 5),
                  "selection": {"fraction": cfg.selection_fraction, "items": int(len(selection.sel_pos)),
                                "rule": RULE}}
    net.eval()
    net.entropy.update_tables()
    mean, std = arch.band_stats(spec.name)
    meta = CodecMeta(modality=spec.name, bands=list(spec.bands), dtype=spec.dtype, grid=spec.grid,
                     mean=[float(v) for v in mean], std=[float(v) for v in std],
                     classes=list(arch.nomenclature.classes), method="sci-cbir",
                     info={"archive": str(arch.path), "train_items": int(len(x_t)), **chosen,
                           "config": {k: v for k, v in vars(cfg).items()}, "history": history,
                           "weighting": WEIGHTINGS[cfg.weighting]
                           + (f"; rsir's own quantisation term, beta {cfg.quantisation:g}" if cfg.quantisation else "")})
    return save_codec(out, net, meta)
