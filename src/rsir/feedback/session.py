"""ANNEAL on an INDEX directory: the human (or simulated) loop that `rsir annotate`, the service and the API share.

- frozen features: the standardised hand-crafted features an index built with ``rsir index --method float``
  holds (one row per archive item, archive order);
- the store: ``<INDEX>.annotations.sqlite`` beside the index (outside it, so rebuilding the index keeps the
  answers), any path given, or a PostgreSQL URL (:mod:`rsir.feedback.store`);
- the model: ``<INDEX>.anneal/`` beside the index (or ``--model``), a directory replaced atomically with each
  new version (``manifest.json`` + ``head.safetensors``); the store records every version.

A *round* retrains the head on every answer so far (when there are any), publishes the new model version, then
selects ``budget`` pairs with the round's strategy and queues them as queries for the expert. Before the first
answer the metric space is the frozen features themselves (L2-normalised).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsir.data.archive import Archive
from rsir.feedback import FeedbackError
from rsir.feedback.anneal import AnnealConfig, HeadState, candidate_pool, retrieval_map, select
from rsir.feedback.store import AnnotationStore
from rsir.pipeline import IndexDir
from rsir.storage import StorageError, read_manifest, write_dir_atomic

MODEL_FORMAT = "rsir-anneal-model"
MODEL_VERSION = 1


def default_db(index_path: str | Path) -> Path:
    """The annotation database beside an INDEX directory."""
    p = Path(index_path)
    return p.with_name(p.name + ".annotations.sqlite")


def default_model_dir(index_path: str | Path) -> Path:
    """The ANNEAL model directory beside an INDEX directory."""
    p = Path(index_path)
    return p.with_name(p.name + ".anneal")


def save_head(path: Path, head: HeadState, version: int, info: dict[str, Any]) -> Path:
    """Write the head as a model directory (atomically replacing the previous version)."""
    from safetensors.numpy import save as st_save

    files = {"head.safetensors": st_save({k: np.ascontiguousarray(v) for k, v in head.weights.items()})}
    manifest = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "model_version": version, "hidden": head.hidden,
                "dim": head.dim, **info}
    return write_dir_atomic(path, files, manifest)


def load_head(path: Path) -> tuple[HeadState, dict[str, Any]]:
    """A head saved by :func:`save_head` and its manifest."""
    from safetensors.numpy import load as st_load

    try:
        manifest = read_manifest(path, MODEL_FORMAT, MODEL_VERSION, FeedbackError, what="ANNEAL model")
        weights = st_load((path / "head.safetensors").read_bytes())
    except (OSError, StorageError, ValueError) as e:
        raise FeedbackError(f"{path}: damaged ANNEAL model ({e})") from None
    return HeadState(dict(weights), int(manifest["hidden"]), int(manifest["dim"])), manifest


@dataclass
class Progress:
    """What the running round is doing (read by the page while it trains)."""

    round: int | None = None
    phase: str = "idle"       # idle, training, selecting, done, failed
    step: int = 0
    steps: int = 0
    message: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set(self, **kw: Any) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, v)

    def to_json(self) -> dict[str, Any]:
        with self.lock:
            return {"round": self.round, "phase": self.phase, "step": self.step, "steps": self.steps,
                    "message": self.message}


class AnnotationSession:
    """Frozen features, the annotation store and the head of one INDEX directory."""

    def __init__(self, index_dir: IndexDir, archive: Archive, db: str | Path | None = None,
                 model_dir: str | Path | None = None, config: AnnealConfig | None = None) -> None:
        if index_dir.method != "float" or index_dir.encoder.encoder_type != "classic":
            raise FeedbackError(f"{index_dir.path}: ANNEAL trains its head on the standardised hand-crafted "
                                f"features; build the index with `rsir index ARCHIVE --method float` (this one "
                                f"holds {index_dir.method} vectors)")
        self.index_dir = index_dir
        self.archive = archive
        self.ids = [str(i) for i in archive.ids]
        self.pos = {i: p for p, i in enumerate(self.ids)}
        self.store = AnnotationStore(db if db is not None else default_db(index_dir.path))
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir(index_dir.path)
        self.config = config or AnnealConfig()
        self.progress = Progress()
        self._x: np.ndarray | None = None

    @classmethod
    def open(cls, index: str | Path, archive: Archive | str | Path | None = None, **kw: Any) -> AnnotationSession:
        idx = IndexDir.open(index)
        arc = idx.archive(archive)
        if arc is None:
            raise FeedbackError(f"{index}: its archive is gone; pass the archive")
        return cls(idx, arc, **kw)

    # -- features and embeddings -----------------------------------------------------------------------------
    @property
    def features(self) -> np.ndarray:
        """Frozen features of every archive item (archive order)."""
        if self._x is None:
            self._x = np.asarray(self.index_dir.vectors(self.ids), np.float32)
        return self._x

    def current(self) -> tuple[HeadState | None, int | None]:
        """The published head and its version (None before the first one)."""
        if not (self.model_dir / "manifest.json").exists():
            return None, None
        head, manifest = load_head(self.model_dir)
        return head, int(manifest["model_version"])

    def embed(self, head: HeadState | None) -> np.ndarray:
        """The metric space: the head's embeddings, or the L2-normalised frozen features without a head."""
        if head is not None:
            return head.embed(self.features)
        x = self.features
        return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def labelled(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Answered pairs as archive positions (pairs of ids outside the archive are left out)."""
        a, b, y = self.store.labelled_pairs()
        keep = [k for k in range(len(a)) if a[k] in self.pos and b[k] in self.pos]
        return (np.asarray([self.pos[a[k]] for k in keep], np.int64),
                np.asarray([self.pos[b[k]] for k in keep], np.int64), np.asarray([y[k] for k in keep], bool))

    def evaluate(self, z: np.ndarray, k: int = 20, queries: int = 500) -> dict[str, float]:
        """mAP@k (A) of test-split queries against every other item (needs the archive's labels)."""
        labels = np.asarray(self.archive.labels)
        if labels.size == 0 or not labels.any():
            return {}
        test = self.archive.split_positions("test")
        test = test if test.size else np.arange(len(self.ids))
        q = np.sort(np.random.default_rng(0).choice(test, min(queries, test.size), replace=False))
        db = np.setdiff1d(np.arange(len(self.ids)), q)
        return {f"map@{k}": round(retrieval_map(z, q, db, labels, k), 4)}

    # -- a round -----------------------------------------------------------------------------------------------
    def train(self, round_id: int | None) -> tuple[HeadState | None, int | None]:
        """Retrain the head on every answer and publish it as a new version (nothing without answers)."""
        from rsir.feedback.anneal import train_head

        i, j, y = self.labelled()
        if i.size == 0:
            return self.current()
        self.progress.set(phase="training", step=0, steps=self.config.steps)
        last = self.current()[0] if self.config.fine_tune else None
        if last is not None and (last.hidden, last.dim) != (self.config.hidden, self.config.dim):
            last = None  # a head of another shape: start afresh
        head = train_head(self.features, i, j, y, self.config, seed=self.config.seed + (round_id or 0),
                          on_step=lambda s: self.progress.set(step=s + 1), init=last)
        metrics = self.evaluate(head.embed(self.features))
        version = self.store.register_model(str(self.model_dir), round_id, int(i.size), metrics)
        save_head(self.model_dir, head, version, {"round": round_id, "pairs": int(i.size),
                                                  "features": int(self.features.shape[1]),
                                                  "index": str(self.index_dir.path), "metrics": metrics,
                                                  "config": self.config.to_json()})
        return head, version

    def select_pairs(self, round_id: int, z: np.ndarray, strategy: str, budget: int) -> list[int]:
        """Select ``budget`` unlabelled pairs of training items and queue them as the round's queries."""
        self.progress.set(phase="selecting", step=0, steps=0)
        items = self.archive.split_positions("train")
        items = items if items.size >= 2 else np.arange(len(self.ids))
        rng = np.random.default_rng(self.config.seed + round_id)
        pi, pj = candidate_pool(self.features, items, self.config, rng)
        li, lj, ly = self.labelled()
        done = set(zip(np.minimum(li, lj).tolist(), np.maximum(li, lj).tolist(), strict=True))
        unl = np.array([(a, b) not in done for a, b in zip(pi.tolist(), pj.tolist(), strict=True)], bool)
        cfg = AnnealConfig(**{**self.config.to_json(), "strategy": strategy, "budget": budget})
        sel = select(strategy, z, pi, pj, unl, li, lj, ly.astype(bool), cfg, rng)
        pairs = [(self.ids[pi[c]], self.ids[pj[c]]) for c in sel.chosen]
        scores = [float(sel.scores[c]) if np.isfinite(sel.scores[c]) else 0.0 for c in sel.chosen]
        return self.store.add_queries(round_id, pairs, scores)

    def begin_round(self, strategy: str | None = None, budget: int | None = None, who: str = "system"
                    ) -> tuple[int, str, int]:
        """Open a round (checked: strategy, budget, no other round running); returns (round, strategy, budget)."""
        strategy = strategy or self.config.strategy
        budget = self.config.budget if budget is None else budget
        if isinstance(budget, bool) or not isinstance(budget, int) or not 0 <= budget <= 100_000:
            raise FeedbackError(f"budget {budget!r}: a count of pairs between 0 and 100000")
        AnnealConfig(strategy=strategy)  # validate before the round opens
        rid = self.store.start_round(strategy, budget, who)
        self.progress.set(round=rid, phase="training", step=0, steps=0, message="")
        return rid, strategy, budget

    def complete_round(self, rid: int, strategy: str, budget: int,
                       on_model: Callable[[HeadState, int], None] | None = None) -> dict[str, Any]:
        """The work of an open round: retrain on the answers so far, publish, call ``on_model`` (the service
        swaps its index), then queue the next pairs; the round is closed as done or failed."""
        try:
            head, version = self.train(rid)
            if head is not None and version is not None and on_model is not None:
                on_model(head, version)
            queued = self.select_pairs(rid, self.embed(head), strategy, budget) if budget else []
            self.store.finish_round(rid, model_version=version)
        except Exception as e:
            self.progress.set(phase="failed", message=str(e))
            self.store.finish_round(rid, error=str(e) or type(e).__name__)
            raise
        self.progress.set(phase="done")
        return {"round": rid, "model_version": version, "queued": len(queued),
                "labelled": self.store.count()}

    def run_round(self, strategy: str | None = None, budget: int | None = None, who: str = "system",
                  on_model: Callable[[HeadState, int], None] | None = None) -> dict[str, Any]:
        """One round, start to end (only one runs at a time: the store refuses a second)."""
        rid, strategy, budget = self.begin_round(strategy, budget, who)
        return self.complete_round(rid, strategy, budget, on_model)

    def search_space(self, head: HeadState, version: int) -> tuple[Any, HeadEncoder]:
        """A float index of the head's embeddings of every archive item and the encoder that makes them from
        images, for :meth:`rsir.query.SearchEngine.swap`."""
        from rsir.index.factory import make_index

        z = head.embed(self.features)
        index = make_index("l2", head.dim, "flat")
        index.add(np.array(self.ids, dtype=object), z)
        return index, HeadEncoder(self.index_dir.encoder, head, version)

    def answer_with_labels(self, mode: str = "shared", who: str = "oracle:labels") -> int:
        """Answer every pending query from the archive's labels (the simulated expert); returns the count."""
        from rsir.feedback.anneal import label_oracle

        oracle = label_oracle(np.asarray(self.archive.labels), mode)
        n = 0
        for q in self.store.pending(limit=1_000_000):
            sim = bool(oracle(np.array([self.pos[q["a"]]]), np.array([self.pos[q["b"]]]))[0])
            self.store.answer(int(q["id"]), sim, who)
            n += 1
        return n

    def status(self) -> dict[str, Any]:
        """Counts, the current model version and the running round (for the page and `rsir annotate`)."""
        model = self.store.current_model()
        return {"labelled": self.store.count(), "pending": len(self.store.pending(limit=100000)),
                "model_version": None if model is None else model["version"],
                "model_metrics": None if model is None else model["metrics"],
                "running_round": self.store.running_round(), "progress": self.progress.to_json(),
                "db": self.store.where, "model_dir": str(self.model_dir)}


class HeadEncoder:
    """The frozen feature encoder followed by the retrained head (images -> L2-normalised embeddings)."""

    encoder_type = "anneal"
    metric = "l2"
    method = "anneal"

    def __init__(self, base: Any, head: HeadState, version: int) -> None:
        self.base = base
        self.head = head
        self.version = version
        self.modality = base.modality
        self.dim = head.dim

    def encode(self, images: np.ndarray) -> np.ndarray:
        return self.head.embed(self.base.encode(images))

    def save(self, path: str | Path) -> Path:
        raise FeedbackError("an ANNEAL head is saved by the annotation session (its model directory)")
