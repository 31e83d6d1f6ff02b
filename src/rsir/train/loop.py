"""The one training loop of rsir: every method is a recipe (model, optimiser, loss on a batch, embedding for
validation) run by :func:`fit`. Device-agnostic (CUDA with bf16/fp16 autocast when available), tqdm progress
with loss and patches/s, per-epoch selection mAP@k (variant A) on the queries the caller gives (the held-out
training slice of rsir.train.selection, never the evaluation queries), a checkpoint each epoch, --resume, early
stopping on that mAP, and seeds for reproducibility. The history keeps the historical key ``val_map@k``."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rsir.errors import RsirError
from rsir.runtime import tune_allocator
from rsir.storage import atomic_file
from rsir.train.validation import validation_map


@dataclass
class TrainConfig:
    """Settings of one training run, built once at the edge (CLI) and passed down."""

    epochs: int = 10
    batch_size: int = 64
    lr: float | None = None            # None: the recipe's default
    device: str = "auto"
    seed: int = 0
    num_workers: int = 2
    patience: int = 5                  # epochs without a better selection mAP before stopping
    eval_k: int = 20
    checkpoint_dir: Path | None = None
    resume: bool = False
    progress: bool = True
    max_steps: int | None = None       # per epoch, for quick runs
    amp: bool = True                   # mixed precision on CUDA only
    val_max_db: int | None = 20000     # cap on the validation database (first items in archive order)
    schedule: str = "constant"         # "cosine": learning rate annealed to 0 over ``epochs`` (per epoch)
    selection_fraction: float = 0.1    # share of the training split held out for model selection (0: none)
    selection_seed: int = 0            # seed of that slice, fixed apart from the training seed (rsir.train.selection)


@dataclass
class History:
    """What happened per epoch: mean loss, its parts, selection mAP (key ``val_map@k``), throughput."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_map: float = -1.0
    best_epoch: int = -1
    stopped_early: bool = False


class Recipe(Protocol):
    """A method as the loop sees it."""

    name: str
    metric: str  # "hamming" (validation on thresholded sigmoid outputs) or "ip" (normalised features)

    @property
    def net(self) -> nn.Module: ...

    def optimizer(self, lr: float | None) -> torch.optim.Optimizer: ...

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]: ...

    def embed(self, x: torch.Tensor) -> torch.Tensor: ...


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def autocast(device: torch.device, enabled: bool) -> AbstractContextManager[Any]:
    """Mixed precision on CUDA (bf16 where supported, else fp16); full precision elsewhere."""
    if not enabled or device.type != "cuda":
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move the tensors of a batch dict to ``device``."""
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def make_loader(ds: Dataset, batch_size: int, shuffle: bool, seed: int, epoch: int, num_workers: int,
                batch_sampler: Iterable[list[int]] | None = None, drop_last: bool = False) -> DataLoader:
    """DataLoader whose shuffling depends on (seed, epoch) only; workers are used for lazily read data."""
    g = torch.Generator().manual_seed(seed * 1000003 + epoch)
    workers = num_workers if getattr(ds, "images", 1) is None else 0  # preloaded tensors need no workers
    kw: dict[str, Any] = {"num_workers": workers, "worker_init_fn": _worker_init if workers else None,
                          "persistent_workers": False, "pin_memory": torch.cuda.is_available()}
    if batch_sampler is not None:
        return DataLoader(ds, batch_sampler=batch_sampler, **kw)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=g, drop_last=drop_last, **kw)


@torch.no_grad()
def embed_dataset(recipe: Recipe, ds: Dataset, device: torch.device, batch_size: int = 256,
                  num_workers: int = 0, amp: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings, labels, positions) of a whole dataset, in eval mode."""
    recipe.net.eval()
    embs, labs, pos = [], [], []
    for batch in make_loader(ds, batch_size, False, 0, 0, num_workers):
        with autocast(device, amp):
            e = recipe.embed(batch["x"].to(device))
        embs.append(e.float().cpu())
        labs.append(batch["label"])
        pos.append(torch.as_tensor(batch["index"]))
    return torch.cat(embs).numpy(), torch.cat(labs).numpy(), torch.cat(pos).numpy()


def evaluate(recipe: Recipe, queries: Dataset, database: Dataset, cfg: TrainConfig,
             device: torch.device) -> float:
    """Validation mAP@k (variant A): queries vs database, query left out."""
    q, ql, qp = embed_dataset(recipe, queries, device, num_workers=cfg.num_workers, amp=cfg.amp)
    db, dl, dp = embed_dataset(recipe, database, device, num_workers=cfg.num_workers, amp=cfg.amp)
    if recipe.metric == "ip":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        db = db / np.maximum(np.linalg.norm(db, axis=1, keepdims=True), 1e-12)
    return validation_map(q, ql, qp, db, dl, dp, recipe.metric, cfg.eval_k)


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


@contextmanager
def odd_batch_guard(n: int, device: torch.device) -> Iterator[None]:
    """Run one training step on one CPU thread when the batch size is odd (and > 1).

    torch 2.13's oneDNN backward of a strided convolution on channels_last tensors (the format rsir's ResNets
    train in on CPU) corrupts the heap when the minibatch is odd and two or more threads share it: a 1 x 1,
    stride-2 convolution of an N x 8 x 30 x 30 batch crashes (segfault or glibc abort) for every odd N > 1 tried,
    never for even N, one thread or contiguous tensors (tests/train/test_odd_batch.py runs it in a subprocess).
    Such batches are rare (the last partial batch is dropped whenever the training split exceeds the batch
    size), so running them on one thread costs little."""
    if device.type != "cpu" or n < 2 or n % 2 == 0 or torch.get_num_threads() < 2:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class TrainingError(RsirError):
    """Training cannot go on (e.g. the loss became NaN or infinite); the message says where and what to check."""


def _non_finite_message(name: str, value: float, epoch: int, step: int, batch: dict[str, Any],
                        ckpt: Path | None) -> str:
    idx = batch.get("index")
    items = [int(i) for i in idx.reshape(-1)[:8].tolist()] if torch.is_tensor(idx) else []
    x = batch.get("x")
    bad_inputs = bool(torch.is_tensor(x) and not torch.isfinite(x).all())
    cause = ("the batch holds non-finite input values: check those items" if bad_inputs else
             "the inputs are finite, so training diverged: try a lower --lr")
    where = f"; the last completed epoch is in {ckpt} (--resume)" if ckpt is not None and ckpt.exists() else ""
    return (f"{name}: the loss became {value} in epoch {epoch + 1}, step {step + 1} (archive positions of the "
            f"batch's first items: {items}); {cause}{where}")


def fit(recipe: Recipe, train: Dataset, cfg: TrainConfig, val_queries: Dataset | None = None,
        val_database: Dataset | None = None, batch_sampler_factory: Any = None) -> History:
    """Train ``recipe.net`` on ``train``; keep the weights of the best selection epoch; return the history.

    ``val_queries`` / ``val_database`` are the model-selection queries and database (rsir.train.selection:
    a held-out slice of the training split against the training split); None keeps the last epoch.

    ``batch_sampler_factory(epoch)`` may supply batches of positions (e.g. the MiLAN two-class sampler)
    instead of shuffled batches.
    """
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    tune_allocator()
    recipe.net.to(device)
    opt = recipe.optimizer(cfg.lr)
    if cfg.schedule not in ("constant", "cosine"):
        raise ValueError(f"unknown learning-rate schedule {cfg.schedule!r} (constant or cosine)")
    base_lrs = [float(g["lr"]) for g in opt.param_groups]
    use_scaler = device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    hist = History()
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs = 0
    start = 0
    ckpt = cfg.checkpoint_dir / "checkpoint.pt" if cfg.checkpoint_dir else None
    if cfg.resume and ckpt is not None and ckpt.exists():
        st = torch.load(ckpt, map_location=device, weights_only=False)
        recipe.net.load_state_dict(st["net"])
        opt.load_state_dict(st["optimizer"])
        hist = st["history"]
        best_state = st["best_state"]
        bad_epochs = st["bad_epochs"]
        start = st["epoch"] + 1
        _set_rng_state(st["rng"])
        if hasattr(recipe, "load_extra_state"):
            recipe.load_extra_state(st.get("extra", {}))
        if cfg.progress:
            print(f"resuming {recipe.name} after epoch {start} from {ckpt}")
    for epoch in range(start, cfg.epochs):
        if hasattr(train, "set_epoch"):
            train.set_epoch(epoch)
        if hasattr(recipe, "set_epoch"):  # e.g. loss weights scheduled over the epochs (ss-cm --ramp)
            recipe.set_epoch(epoch, cfg.epochs)
        sampler = batch_sampler_factory(epoch) if batch_sampler_factory is not None else None
        loader = make_loader(train, cfg.batch_size, True, cfg.seed, epoch, cfg.num_workers, sampler,
                             drop_last=len(train) > cfg.batch_size)  # type: ignore[arg-type]
        if cfg.schedule == "cosine":  # closed form of the epoch, so a resumed or extended run follows cfg.epochs
            for g, base in zip(opt.param_groups, base_lrs, strict=True):
                g["lr"] = base * (1 + math.cos(math.pi * epoch / cfg.epochs)) / 2
        recipe.net.train()
        t0 = time.perf_counter()
        n_seen, loss_sum, n_steps = 0, 0.0, 0
        parts_sum: dict[str, float] = {}
        it: Iterator[dict[str, Any]] = iter(loader)
        total = len(loader) if cfg.max_steps is None else min(len(loader), cfg.max_steps)
        bar = None
        if cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=total, desc=f"{recipe.name} epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                       leave=False)
        for step, batch in enumerate(it):
            if cfg.max_steps is not None and step >= cfg.max_steps:
                break
            batch = to_device(batch, device)
            with odd_batch_guard(len(batch["x"]), device):
                with autocast(device, cfg.amp):
                    loss, parts = recipe.loss(batch)
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):  # stop before the step spreads NaN/Inf into the weights
                    raise TrainingError(_non_finite_message(recipe.name, loss_value, epoch, step, batch, ckpt))
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            n = len(batch["x"])
            n_seen += n
            n_steps += 1
            loss_sum += loss_value
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v
            if bar is not None:
                rate = n_seen / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{loss_value:.4f}", patches_s=f"{rate:.0f}")
                bar.update(1)
        if bar is not None:
            bar.close()
        secs = time.perf_counter() - t0
        rec: dict[str, float] = {"epoch": epoch + 1, "loss": loss_sum / max(n_steps, 1), "seconds": secs,
                                 "patches_per_s": n_seen / max(secs, 1e-9), "lr": opt.param_groups[0]["lr"]}
        rec.update({k: v / max(n_steps, 1) for k, v in parts_sum.items()})
        selected = None
        if val_queries is not None and val_database is not None:
            selected = f"val_map@{cfg.eval_k}", evaluate(recipe, val_queries, val_database, cfg, device)
        elif hasattr(recipe, "selection_score"):  # a label-free selection score of the recipe's own (ss-cm)
            selected = recipe.selection_score(device)
        if selected is not None:
            key, m = selected
            rec[key] = m
            if m > hist.best_map:
                hist.best_map, hist.best_epoch, bad_epochs = m, epoch + 1, 0
                best_state = {k: v.detach().cpu().clone() for k, v in recipe.net.state_dict().items()}
            else:
                bad_epochs += 1
        else:
            hist.best_epoch = epoch + 1
            best_state = None
        hist.epochs.append(rec)
        if cfg.progress:
            print(f"{recipe.name} epoch {epoch + 1}/{cfg.epochs}: loss {rec['loss']:.4f}"
                  + (f", selection mAP@{cfg.eval_k}(A) {rec[f'val_map@{cfg.eval_k}']:.4f}"
                     if f"val_map@{cfg.eval_k}" in rec else "")
                  + (f", selection {selected[0]} {selected[1]:.4f}" if selected is not None
                     and selected[0] != f"val_map@{cfg.eval_k}" else "")
                  + f", {rec['patches_per_s']:.0f} patches/s", flush=True)
        stop = selected is not None and bad_epochs >= cfg.patience
        if ckpt is not None:
            extra = recipe.extra_state() if hasattr(recipe, "extra_state") else {}
            _save_checkpoint(ckpt, {"epoch": epoch, "net": recipe.net.state_dict(), "optimizer": opt.state_dict(),
                                    "history": hist, "best_state": best_state, "bad_epochs": bad_epochs,
                                    "rng": _rng_state(), "extra": extra})
        if stop:
            hist.stopped_early = True
            if cfg.progress:
                print(f"early stop: no better selection mAP for {cfg.patience} epochs")
            break
    if best_state is not None:
        recipe.net.load_state_dict(best_state)
    recipe.net.eval()
    return hist
