"""Staged training of the joint codec (SCI-CBIR's multistage procedure with automatic loss weighting).

Stage 1 (codec): g_a, g_s and the entropy model minimise the rate-distortion loss R + lambda D (additive uniform
noise in place of rounding). Stage 2 (joint): every part, hashing head and classifier included, minimises the
four objectives {R + lambda D, soft pairwise, bit balance, classification} combined by learned uncertainty
weights (:class:`rsir.losses.jci.UncertaintyWeights`); the hashing losses reach g_a through the latent, so the
representation is shaped for both compression and retrieval. The fixed-point coding tables are built from the
final entropy model before the codec is saved.
"""

from __future__ import annotations

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
    rate_distortion_loss,
    soft_pairwise_loss,
)

OBJECTIVES = ["rd", "pairwise", "balance", "classification"]


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


def load_training_data(arch: Archive, modality: str, max_items: int | None = None,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Normalised train-split images and their multi-hot labels (all items when there is no train split)."""
    pos = arch.split_positions("train")
    if len(pos) == 0:
        pos = np.arange(len(arch))
    if max_items is not None and len(pos) > max_items:
        pos = np.sort(np.random.default_rng(seed).choice(pos, max_items, replace=False))
    xs = [x for _, x in arch.batches(256, modality=modality, positions=pos.tolist())]
    return np.concatenate(xs), arch.labels[pos]


def train_codec(archive: Archive | str | Path, out: str | Path, cfg: CodecTrainConfig | None = None,
                log: Callable[[str], None] | None = None) -> Path:
    """Train a joint codec on an archive's training split in two stages and save it at ``out``."""
    cfg = cfg or CodecTrainConfig()
    arch = archive if isinstance(archive, Archive) else open_archive(archive)
    spec = arch.spec(cfg.modality)
    if spec.grid[0] % DOWNSCALE or spec.grid[1] % DOWNSCALE:
        raise CodecError(f"the codec downsamples by {DOWNSCALE}: the {spec.name} grid {spec.grid} is not a multiple")
    if cfg.bits % 8 or cfg.bits <= 0:
        raise CodecError(f"bits must be a positive multiple of 8 (got {cfg.bits})")
    torch.manual_seed(cfg.seed)
    x_all, y_all = load_training_data(arch, spec.name, cfg.max_items, cfg.seed)
    x_t, y_t = torch.from_numpy(x_all), torch.from_numpy(y_all.astype(np.float32))
    net = JointNet(CodecConfig(in_channels=len(spec.bands), n_filters=cfg.n_filters, latent=cfg.latent,
                               bits=cfg.bits, n_classes=len(arch.nomenclature)))
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
    weights = UncertaintyWeights(OBJECTIVES)
    history: list[dict[str, Any]] = []
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()

    def run_stage(stage: str, epochs: int, params: list[torch.nn.Parameter]) -> None:
        opt = torch.optim.Adam(params, lr=cfg.lr)
        for ep in range(epochs):
            net.train()
            perm = torch.randperm(len(x_t), generator=gen)
            sums: dict[str, float] = {}
            nb = 0
            for s in range(0, len(perm) - 1, cfg.batch_size):
                idx = perm[s:s + cfg.batch_size]
                if len(idx) < 2:
                    continue
                xb, yb = x_t[idx], y_t[idx]
                out = net(xb, noise=True)
                rd, r, d = rate_distortion_loss(out["likelihoods"], xb, out["x_hat"], cfg.lmbda)
                parts = {"rd": rd, "bpp": r, "mse": d}
                if stage == "codec":
                    loss = rd
                else:
                    parts.update(pairwise=soft_pairwise_loss(out["h"], yb), balance=bit_balance_loss(out["h"]),
                                 classification=classification_loss(out["logits"], yb))
                    loss = weights(parts)
                if not torch.isfinite(loss):
                    raise CodecError(f"{stage} stage, epoch {ep + 1}: the loss is not finite")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                nb += 1
            rec = {"stage": stage, "epoch": ep + 1, **{k: round(v / max(nb, 1), 5) for k, v in sums.items()},
                   "seconds": round(time.perf_counter() - t0, 1)}
            if stage == "joint":
                rec["weights"] = {k: round(v, 4) for k, v in weights.weights().items()}
            history.append(rec)
            if log:
                log(" ".join(f"{k}={v}" for k, v in rec.items()))

    codec_params = [p for n, p in net.named_parameters() if n.split(".")[0] in ("g_a", "g_s", "entropy")]
    run_stage("codec", cfg.codec_epochs, codec_params)
    run_stage("joint", cfg.joint_epochs, list(net.parameters()) + list(weights.parameters()))
    net.eval()
    net.entropy.update_tables()
    mean, std = arch.band_stats(spec.name)
    meta = CodecMeta(modality=spec.name, bands=list(spec.bands), dtype=spec.dtype, grid=spec.grid,
                     mean=[float(v) for v in mean], std=[float(v) for v in std],
                     classes=list(arch.nomenclature.classes), method="sci-cbir",
                     info={"archive": str(arch.path), "train_items": int(len(x_t)),
                           "config": {k: v for k, v in vars(cfg).items()}, "history": history,
                           "weighting": "uncertainty (Kendall et al. 2018), learned in the joint stage"})
    return save_codec(out, net, meta)
