"""Pictures of a code space: a 2-D t-SNE map of the codes coloured by label, and the distance histograms of
relevant and irrelevant pairs.

Code map: openTSNE (Policar et al., JSS 2024) on at most ``max_points`` database items drawn with a fixed seed;
hash codes are unpacked to bits and compared with the Hamming metric (the index's own distance, up to the
factor 1/bits), float vectors with the cosine (``ip``) or Euclidean (``l2``) metric. New points (a query) are
placed into the fitted map with openTSNE's ``transform`` (the map itself does not move). Each point is coloured
by its rarest label (the least frequent in the archive among the item's labels, so that small classes are not
hidden under the big ones); unlabelled items are grey.

Histograms: the distances of query-database pairs that share at least one label (relevant) and of those that
share none (irrelevant), on at most ``max_pairs`` pairs drawn with a fixed seed, each normalised to a density.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsir.bits import hamming_matrix
from rsir.errors import RsirError
from rsir.storage import atomic_savefig, atomic_write_json


def _points(vectors: np.ndarray, metric: str) -> tuple[np.ndarray, str]:
    """What t-SNE sees: unpacked bits with the Hamming metric, or float vectors with their metric."""
    if metric == "hamming":
        return np.unpackbits(np.asarray(vectors, dtype=np.uint8), axis=1).astype(np.float32), "hamming"
    return np.asarray(vectors, dtype=np.float32), "cosine" if metric == "ip" else "euclidean"


def rarest_label(labels: np.ndarray) -> np.ndarray:
    """Per item, the index of its least frequent label in the whole set (-1 for an unlabelled item)."""
    lab = np.asarray(labels).astype(bool)
    if lab.ndim != 2 or lab.shape[1] == 0:  # an unlabelled archive (nomenclature "none")
        return np.full(len(lab), -1, dtype=np.int64)
    freq = lab.sum(0).astype(float)
    cost = np.where(lab, freq[None, :], np.inf)
    out = cost.argmin(1)
    out[~lab.any(1)] = -1
    return out


@dataclass
class CodeMap:
    """A fitted 2-D map of codes: positions (in the archive), coordinates, colour class and the fitted model."""

    positions: np.ndarray
    xy: np.ndarray
    colour: np.ndarray
    metric: str
    seconds: float
    model: Any = field(default=None, repr=False)

    def place(self, vectors: np.ndarray) -> np.ndarray:
        """Coordinates of new codes in this map (openTSNE transform; the map does not move)."""
        pts, _ = _points(np.atleast_2d(vectors), self.metric)
        return np.asarray(self.model.transform(pts, n_iter=100), dtype=np.float64)

    def to_json(self, ids: Sequence[str], classes: Sequence[str]) -> dict[str, Any]:
        return {"method": "openTSNE", "metric": self.metric, "n": int(len(self.positions)),
                "seconds": round(self.seconds, 2), "classes": list(classes),
                "colour_rule": "rarest label of the item (least frequent in the archive); -1 unlabelled",
                "points": [{"id": ids[int(p)], "x": round(float(x), 3), "y": round(float(y), 3), "c": int(c)}
                           for p, (x, y), c in zip(self.positions, self.xy, self.colour, strict=True)]}


def fit_codemap(vectors: np.ndarray, metric: str, labels: np.ndarray, max_points: int = 1000, seed: int = 0,
                positions: np.ndarray | None = None) -> CodeMap:
    """t-SNE of a seeded sample of at most ``max_points`` of ``vectors``; ``labels`` are the multi-hot rows of all
    items (colours use label frequencies over all of them). With ``positions``, ``vectors`` are already the
    sampled rows and ``positions`` their rows in ``labels``."""
    try:
        from openTSNE import TSNE
    except ImportError:
        raise RsirError("the code map needs openTSNE (pip install openTSNE)") from None
    if positions is None:
        n = len(vectors)
        rng = np.random.default_rng(seed)
        positions = np.sort(rng.choice(n, size=min(n, max_points), replace=False))
        vectors = np.asarray(vectors)[positions]
    if len(positions) < 5:
        raise RsirError(f"a code map needs at least 5 items, got {len(positions)}")
    pts, tmetric = _points(np.asarray(vectors), metric)
    t0 = time.perf_counter()
    perplexity = float(min(30.0, max(2.0, (len(positions) - 1) / 3.0)))
    model = TSNE(n_components=2, metric=tmetric, perplexity=perplexity, random_state=seed, n_jobs=1,
                 verbose=False).fit(pts)
    colour = rarest_label(labels)[positions] if len(labels) else np.full(len(positions), -1)
    return CodeMap(np.asarray(positions), np.asarray(model, dtype=np.float64), colour, metric,
                   time.perf_counter() - t0, model)


def pair_distances(q_vecs: np.ndarray, db_vecs: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray,
                   metric: str, max_pairs: int = 200_000, seed: int = 0,
                   exclude_self: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distances of (relevant, irrelevant) query-database pairs, at most ``max_pairs`` pairs drawn with a seed;
    ``exclude_self[i]`` is query i's database row (left out), as in leave-one-out."""
    rng = np.random.default_rng(seed)
    nq, nd = len(q_vecs), len(db_vecs)
    per_q = max(1, min(nd, max_pairs // max(1, nq)))
    qi = np.repeat(np.arange(nq), per_q)
    di = np.concatenate([rng.choice(nd, per_q, replace=False) for _ in range(nq)]) if nq else np.zeros(0, int)
    if exclude_self is not None:
        keep = di != np.asarray(exclude_self)[qi]
        qi, di = qi[keep], di[keep]
    d = np.empty(len(qi), dtype=np.float64)
    for i in np.unique(qi):
        sel = qi == i
        if metric == "hamming":
            d[sel] = hamming_matrix(q_vecs[i:i + 1], db_vecs[di[sel]])[0]
        elif metric == "ip":
            d[sel] = -(db_vecs[di[sel]] @ q_vecs[i])
        else:
            d[sel] = np.linalg.norm(db_vecs[di[sel]] - q_vecs[i], axis=1)
    rel = (np.asarray(q_labels)[qi].astype(bool) & np.asarray(db_labels)[di].astype(bool)).any(1)
    return d[rel], d[~rel]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_codemap(cm: CodeMap, classes: Sequence[str], path: str | Path, title: str = "",
                 query_xy: np.ndarray | None = None) -> Path:
    """The map as a PNG: points coloured by rarest label (legend: the classes shown), queries as stars."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 6))
    cmap = plt.get_cmap("tab20")
    shown = [c for c in np.unique(cm.colour) if c >= 0]
    grey = cm.colour < 0
    if grey.any():
        ax.scatter(cm.xy[grey, 0], cm.xy[grey, 1], s=6, c="#bbbbbb", label="unlabelled", linewidths=0)
    for j, c in enumerate(shown):
        sel = cm.colour == c
        ax.scatter(cm.xy[sel, 0], cm.xy[sel, 1], s=7, color=cmap(j % 20), label=f"{classes[c]} ({int(sel.sum())})",
                   linewidths=0)
    if query_xy is not None:
        ax.scatter(query_xy[:, 0], query_xy[:, 1], marker="*", s=260, c="#e8780c", edgecolors="black",
                   label="query", zorder=5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"t-SNE of {len(cm.xy)} codes ({cm.metric}), coloured by rarest label", fontsize=10)
    ax.legend(fontsize=6, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return _save(plt, fig, path)


def plot_distance_histograms(rel: np.ndarray, irr: np.ndarray, metric: str, path: str | Path,
                             bits: int | None = None, title: str = "") -> Path:
    """Density histograms of relevant and irrelevant pair distances (one bin per Hamming distance)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    allv = np.concatenate([rel, irr]) if len(rel) + len(irr) else np.zeros(1)
    if metric == "hamming":
        hi = bits if bits else int(allv.max()) + 1
        bins = np.arange(-0.5, hi + 1.5, 1.0)
        xlabel = "Hamming distance"
    else:
        bins = np.linspace(float(allv.min()), float(allv.max()) + 1e-9, 50)
        xlabel = "negative inner product" if metric == "ip" else "Euclidean distance"
    if len(rel):
        ax.hist(rel, bins=bins, density=True, alpha=0.55, color="#2a9d55",
                label=f"relevant (share a label), n={len(rel):,}, mean {rel.mean():.2f}")
    if len(irr):
        ax.hist(irr, bins=bins, density=True, alpha=0.55, color="#c0392b",
                label=f"irrelevant, n={len(irr):,}, mean {irr.mean():.2f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title or "distances of relevant and irrelevant pairs", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: str | Path) -> Path:
    path = atomic_savefig(fig, path)
    plt.close(fig)
    return path


def write_code_pictures(out: str | Path, db_vecs: np.ndarray, db_labels: np.ndarray, q_vecs: np.ndarray,
                        q_labels: np.ndarray, metric: str, ids: Sequence[str], classes: Sequence[str],
                        bits: int | None = None, max_points: int = 1000, exclude_self: np.ndarray | None = None,
                        name: str = "") -> dict[str, Path]:
    """codemap.png + codemap.json (t-SNE of the database codes) and distance_hist.png, written into ``out``."""
    out = Path(out)
    paths: dict[str, Path] = {}
    rel, irr = pair_distances(q_vecs, db_vecs, q_labels, db_labels, metric, exclude_self=exclude_self)
    paths["distance_hist"] = plot_distance_histograms(rel, irr, metric, out / "distance_hist.png", bits,
                                                      f"{name}: distances of relevant / irrelevant pairs")
    if max_points > 0 and len(db_vecs) >= 5:
        cm = fit_codemap(db_vecs, metric, db_labels, max_points)
        paths["codemap"] = plot_codemap(cm, classes, out / "codemap.png",
                                        f"{name}: t-SNE of {len(cm.xy)} database codes, coloured by rarest label")
        paths["codemap_json"] = atomic_write_json(out / "codemap.json", cm.to_json(ids, classes))
    return paths
