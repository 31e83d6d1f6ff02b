"""Train a method on an archive and write the model directory: what `rsir train` runs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from rsir.data.archive import Archive, open_archive
from rsir.errors import RsirError
from rsir.methods.recipes import ClassifierRecipe, MilanE2ERecipe, MilanRecipe
from rsir.miners.milan_pairs import MilanPairsBatchSampler
from rsir.models.io import ModelMeta, load_model, save_model
from rsir.models.net import NetConfig, RetrievalNet
from rsir.models.resnet import ResNetConfig
from rsir.train.data import SplitDataset, TensorItems
from rsir.train.loop import History, TrainConfig, fit, resolve_device, seed_everything
from rsir.train.selection import Selection, split_for_selection


@dataclass
class MethodOptions:
    """What differs between methods: code length, sampler, classifier loss, encoder width, frozen features."""

    bits: int = 64
    sampler: str = "random"            # MiLAN samples at random; hard samplers collapse on hard data
    cls_loss: str = "bce"
    width: int = 16
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1])
    features: Path | None = None       # classifier model whose features MiLAN freezes (milan) or starts from (e2e)
    preload: bool | None = None
    augment: bool = True
    sscm: Any = None                   # rsir.methods.sscm.SSCMOptions for ss-cm (None: built from the fields above)


@dataclass
class TrainResult:
    path: Path
    history: History
    notes: list[str] = field(default_factory=list)


def _meta(archive: Archive, modality: str, method: str, hist: History, extra: dict[str, Any],
          selection: Selection | None) -> ModelMeta:
    spec = archive.spec(modality)
    mean, std = archive.band_stats(modality)
    info = {"method": method, "archive": str(archive.path), "best_epoch": hist.best_epoch,
            "val_map@20_A": hist.best_map if hist.best_map >= 0 else None,
            "validation": ("model selection (best epoch, early stopping): the held-out training slice as queries "
                           "vs the whole training split, query left out; validation and test items are never "
                           "scored" if selection is not None else
                           "none: too few training items for a selection slice, the last epoch is kept"),
            "selection": selection.to_json() if selection is not None else None,
            "history": hist.epochs, **extra}
    return ModelMeta(modality, list(spec.bands), mean, std, spec.grid[0], list(archive.nomenclature.classes), info)


# fewer training items than this: no selection slice (the last epoch is kept)
MIN_TRAIN_FOR_SELECTION = 10


@dataclass
class Splits:
    """Training items (the selection slice removed), the selection queries and database, and its record."""

    train: SplitDataset
    queries: SplitDataset | None
    database: Dataset | None
    selection: Selection | None


def _splits(archive: Archive, modality: str, opts: MethodOptions, cfg: TrainConfig) -> Splits:
    """Train on the training split minus a fixed, seeded slice; select the model on that slice.

    The validation split (the RSiM queries) and the test split (the leave-one-out queries) are never touched,
    so the best epoch and early stopping cannot adapt to the evaluation queries (rsir.train.selection).
    """
    has = set(archive.catalog["split"].astype(str))
    train_split = "train" if "train" in has else None
    pos = archive.split_positions(train_split)
    seed = cfg.seed
    if len(pos) < MIN_TRAIN_FOR_SELECTION or cfg.selection_fraction <= 0:
        return Splits(SplitDataset(archive, modality, train_split, opts.preload, opts.augment, seed, pos),
                      None, None, None)
    ids = [archive.ids[int(p)] for p in pos]
    mask, sel = split_for_selection(ids, train_split, cfg.selection_fraction, cfg.selection_seed)
    train = SplitDataset(archive, modality, train_split, opts.preload, opts.augment, seed, pos[~mask])
    queries = SplitDataset(archive, modality, train_split, opts.preload, False, seed, pos[mask])
    train_plain = SplitDataset(archive, modality, train_split, False, False, seed, pos[~mask])
    train_plain.images = train.images  # share the preloaded tensor; this view is never augmented
    return Splits(train, queries, ConcatDataset([train_plain, queries]), sel)


def train_classifier(archive: Archive, modality: str, out: Path, cfg: TrainConfig,
                     opts: MethodOptions) -> TrainResult:
    """Multi-label classifier; saved with output "features" (the float features of the archive)."""
    spec = archive.spec(modality)
    net_cfg = NetConfig(ResNetConfig(len(spec.bands), opts.width, list(opts.blocks)),
                        n_classes=len(archive.nomenclature), output="features", method="classifier")
    seed_everything(cfg.seed)  # the weight initialisation too: same seed, same model
    recipe = ClassifierRecipe(net_cfg, opts.cls_loss)
    sp = _splits(archive, modality, opts, cfg)
    cfg = replace(cfg, batch_size=cfg.batch_size or recipe.default_batch_size)
    hist = fit(recipe, sp.train, cfg, sp.queries, sp.database)
    path = save_model(out, recipe.net, _meta(archive, modality, "classifier", hist, {"loss": opts.cls_loss},
                                             sp.selection))
    return TrainResult(path, hist)


@torch.inference_mode()
def _features(net: RetrievalNet, ds: SplitDataset, device: torch.device, batch: int = 64) -> TensorItems:
    fast = net.eval().to(device).for_inference()  # the same fused network that encodes the archive later
    feats = []
    for s in range(0, len(ds), batch):
        xs = torch.stack([ds[i]["x"] for i in range(s, min(s + batch, len(ds)))]).to(device)
        feats.append(fast(xs)["features"].float().cpu())
    return TensorItems(torch.cat(feats), ds.labels, ds.positions)


def _load_features(archive: Archive, modality: str, features: Path) -> RetrievalNet:
    net, meta = load_model(features)
    spec = archive.spec(modality)
    if meta.modality != modality or list(meta.bands) != list(spec.bands):
        raise RsirError(f"--features {features}: trained on {meta.modality} bands {meta.bands}, but the archive's "
                        f"{modality} has bands {spec.bands}")
    return net


def train_milan(archive: Archive, modality: str, out: Path, cfg: TrainConfig, opts: MethodOptions,
                features_net: RetrievalNet) -> TrainResult:
    """MiLAN: frozen classifier features -> 3-layer hash head trained with the MiLAN objective."""
    device = resolve_device(cfg.device)
    plain = replace(opts, augment=False)  # fixed features, as in the paper (no augmentation of the inputs)
    sp = _splits(archive, modality, plain, cfg)
    train_ds = sp.train
    train = _features(features_net, train_ds, device)
    vq = _features(features_net, sp.queries, device) if sp.queries is not None else None
    vdb: Dataset | None = ConcatDataset([train, vq]) if vq is not None else None
    seed_everything(cfg.seed)
    recipe = MilanRecipe(features_net.feature_dim, opts.bits, sampler=opts.sampler, seed=cfg.seed)
    cfg = replace(cfg, batch_size=cfg.batch_size or recipe.default_batch_size, num_workers=0)
    sampler_factory = None
    if opts.sampler == "milan-pairs":
        labels = archive.labels[train_ds.positions]
        if not (labels.sum(1) == 1).all():
            raise RsirError("the milan-pairs sampler is for single-label archives; use --sampler random, "
                            "batch-hard, semi-hard, diverse or diverse-rf for multi-label data")
        classes = labels.argmax(1)
        n_trip = cfg.batch_size // 3
        steps = max(1, len(train) // cfg.batch_size)
        sampler_factory = lambda ep: MilanPairsBatchSampler(classes, n_trip, steps, cfg.seed + ep)  # noqa: E731
    hist = fit(recipe, train, cfg, vq, vdb, sampler_factory)
    net_cfg = replace(features_net.config, bits=opts.bits, output="hash", method="milan")
    full = RetrievalNet(net_cfg)
    full.encoder.load_state_dict(features_net.encoder.state_dict())
    if full.classifier is not None and features_net.classifier is not None:
        full.classifier.load_state_dict(features_net.classifier.state_dict())
    assert full.hash_head is not None
    full.hash_head.load_state_dict(recipe.net.state_dict())
    head = recipe.net.eval()
    split_x = torch.cat([train.x, vq.x]) if vq is not None else train.x  # the whole training split
    with torch.inference_mode():
        distinct = _distinct_codes(head(split_x[s:s + 4096].to(device)) for s in range(0, len(split_x), 4096))
    extra = {"sampler": opts.sampler, "bits": opts.bits, "features": str(opts.features) if opts.features else None,
             "frozen_encoder": True, "distinct_codes_train": distinct}
    res = TrainResult(save_model(out, full, _meta(archive, modality, "milan", hist, extra, sp.selection)), hist)
    res.notes += _collapse_notes(distinct, len(split_x), opts.sampler)
    return res


def _collapse_notes(distinct: int, n: int, sampler: str) -> list[str]:
    """A warning when the codes of ``n`` training items take at most 1% (or 2) distinct values."""
    if distinct > max(2, n // 100):
        return []
    return [f"the hash codes collapsed: {distinct} distinct codes over {n} training items (sampler {sampler}); "
            "hard-mining samplers can pull every item to one code on multi-label data, --sampler random avoids it "
            "(BENCHMARKS.md, sampler ablation)"]


def _distinct_codes(outputs: Iterable[torch.Tensor]) -> int:
    """How many different codes batches of sigmoid outputs hold, thresholded at 0.5 as the encoder does (a
    collapse check)."""
    codes = [o.cpu() > 0.5 for o in outputs]
    return int(torch.unique(torch.cat(codes).to(torch.uint8), dim=0).shape[0]) if codes else 0


def train_milan_e2e(archive: Archive, modality: str, out: Path, cfg: TrainConfig, opts: MethodOptions,
                    init: RetrievalNet | None) -> TrainResult:
    """MiLAN objective with the encoder trained too; starts from a classifier's encoder when given one."""
    spec = archive.spec(modality)
    enc = init.config.encoder if init is not None else ResNetConfig(len(spec.bands), opts.width, list(opts.blocks))
    net_cfg = NetConfig(enc, n_classes=0, bits=opts.bits, output="hash", method="milan-e2e")
    seed_everything(cfg.seed)
    recipe = MilanE2ERecipe(net_cfg, sampler=opts.sampler, seed=cfg.seed)
    if init is not None:
        recipe.model.encoder.load_state_dict(init.encoder.state_dict())
    sp = _splits(archive, modality, opts, cfg)
    cfg = replace(cfg, batch_size=cfg.batch_size or recipe.default_batch_size)
    hist = fit(recipe, sp.train, cfg, sp.queries, sp.database)
    device = resolve_device(cfg.device)
    fast = recipe.model.eval().to(device).for_inference()
    # the collapse check on (at most) the first 2,000 training items, unaugmented
    pos = archive.split_positions("train")[:2000]
    n = len(pos)
    with torch.inference_mode():
        distinct = _distinct_codes(fast(torch.from_numpy(xb).to(device))["hash"]
                                   for _, xb in archive.batches(64, modality=modality, positions=pos.tolist()))
    extra = {"sampler": opts.sampler, "bits": opts.bits, "init": str(opts.features) if opts.features else None,
             "frozen_encoder": False, "distinct_codes_train": distinct, "distinct_codes_checked_items": n}
    res = TrainResult(save_model(out, recipe.model, _meta(archive, modality, "milan-e2e", hist, extra,
                                                                 sp.selection)), hist)
    res.notes += _collapse_notes(distinct, n, opts.sampler)
    return res


def train_model(archive: str | Path | Archive, method: str, out: str | Path, cfg: TrainConfig,
                opts: MethodOptions, modality: str | None = None) -> TrainResult:
    """Train ``method`` on an archive and save the model directory at ``out``."""
    from rsir.methods import METHODS

    if method not in METHODS:
        raise RsirError(f"unknown method {method!r} (one of {', '.join(METHODS)})")
    a = archive if isinstance(archive, Archive) else open_archive(archive)
    if method == "ss-cm":  # self-supervised: no label is read, so no label check either
        from rsir.methods.sscm import SELECTION_KEY, SSCMOptions, train_sscm

        sopts = opts.sscm or SSCMOptions(bits=opts.bits, width=opts.width, blocks=tuple(opts.blocks),
                                         preload=opts.preload, augment=opts.augment)
        path, hist = train_sscm(a, Path(out), cfg, sopts)
        res = TrainResult(path, hist)
        if hist.epochs:
            from rsir.eval.report import plot_training

            plot_training({method: hist.epochs}, path / "training.png",
                          f"{method}: {path.name} (best epoch {hist.best_epoch})", SELECTION_KEY,
                          "selection: partner MRR (no labels)")
        return res
    mod = modality or a.primary_modality
    a.spec(mod)
    if not np.asarray(a.labels).any():
        raise RsirError(f"archive {a.path} has no labels; {method} is a supervised method")
    out = Path(out)
    if method == "classifier":
        return _with_plot(train_classifier(a, mod, out, cfg, opts), method)
    notes: list[str] = []
    feats: RetrievalNet | None = None
    if opts.features is not None:
        feats = _load_features(a, mod, Path(opts.features))
    elif method == "milan":
        cls_out = out.with_name(out.name + "-classifier")
        notes.append(f"no --features given: trained a classifier first as the frozen feature extractor "
                     f"({cls_out})")
        ccfg = replace(cfg, checkpoint_dir=cls_out.with_name(cls_out.name + ".ckpt") if cfg.checkpoint_dir else None)
        print(notes[-1], flush=True)
        cres = train_classifier(a, mod, cls_out, ccfg, opts)
        feats, _ = load_model(cres.path)
        opts = replace(opts, features=cres.path)
    if method == "milan":
        assert feats is not None
        res = train_milan(a, mod, out, cfg, opts, feats)
    else:
        res = train_milan_e2e(a, mod, out, cfg, opts, feats)
    res.notes = notes + res.notes
    return _with_plot(res, method)


def _with_plot(res: TrainResult, method: str) -> TrainResult:
    """Add ``training.png`` (loss and validation mAP per epoch) to the model directory."""
    from rsir.eval.report import plot_training

    if res.history.epochs:
        plot_training({method: res.history.epochs}, res.path / "training.png",
                      f"{method}: {res.path.name} (best epoch {res.history.best_epoch})")
    return res
