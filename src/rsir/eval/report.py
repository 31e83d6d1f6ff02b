"""Evaluation reports: metric tables (plain text, Markdown), atomic JSON files and PNG plots (matplotlib Agg)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rsir.storage import atomic_savefig, atomic_write_json, atomic_write_text

#: What each reported name means; written into eval.json so every number carries its definition.
DEFINITIONS: dict[str, str] = {
    "relevance": "an item is relevant when it shares at least one label with the query; graded relevance "
                 "C = number of shared labels",
    "ranking": "ascending distance, ties broken by ascending archive position",
    "mAP@k(A)": "(1/R_k) sum_{i<=k} rel_i P@i, R_k = relevant in the top k, 0 if none (MiLAN, DeepHash, "
                "torchmetrics RetrievalMAP(top_k))",
    "mAP@k(B)": "DUCH calc_map_k: mean over n <= min(k, R) of n / rank_n, rank_n in the full ranking",
    "mAP@k(C)": "(1/min(k, R)) sum_{i<=k} rel_i P@i, R = relevant in the archive",
    "mAP@k(C,tie-aware)": "variant C averaged over all orderings of equal Hamming distances (McSherry & "
                          "Najork 2008)",
    "P@k(tie-aware)": "P@k averaged over all orderings of equal Hamming distances",
    "[exact] / [jac>=0.5]": "the same metric with a stricter relevance: identical label sets, or a Jaccard index "
                            "|Lq∩Lx|/|Lq∪Lx| >= 0.5 (\"any shared label\" saturates on BigEarthNet)",
    "WAP@k": "(1/R_k) sum_{i<=k} rel_i ACG@i (Zhao et al. 2015)",
    "ACG@k": "(1/k) sum_{i<=k} C_i",
    "NDCG@k(exp)": "gain 2^C - 1, discount 1/log2(i+1), ideal DCG from the best ordering of the archive",
    "NDCG@k(lin)": "gain C, discount 1/log2(i+1), ideal DCG from the best ordering of the archive",
    "rsim_P@k / rsim_R@k / rsim_F1@k": "RSiM BigEarthNet: per retrieved item |Lq∩Lr|/|Lr| and |Lq∩Lr|/|Lq| "
                                       "averaged over the top k and the queries; F1 of the two averages",
    "radius_P / radius_R": "precision / recall of the Hamming ball of radius r, per query then averaged; "
                           "an empty ball has precision 0",
}


def _fmt(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def format_table(results: Mapping[str, Mapping[str, float]], markdown: bool = False,
                 keys: Sequence[str] | None = None) -> str:
    """A table with one row per metric and one column per method (plain text or Markdown)."""
    methods = list(results)
    if keys is None:
        seen: dict[str, None] = {}
        for m in methods:
            seen.update(dict.fromkeys(results[m]))
        keys = list(seen)
    cells = [[k] + [_fmt(results[m].get(k, float("nan"))) for m in methods] for k in keys]
    header = ["metric"] + methods
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(methods)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header] + cells) for i in range(len(header))]
    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in cells])


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON atomically (rsir.storage)."""
    return atomic_write_json(path, obj)


def read_json(path: str | Path) -> Any:
    """Read a JSON report."""
    return json.loads(Path(path).read_text())


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: str | Path) -> Path:
    path = atomic_savefig(fig, path)
    plt.close(fig)
    return path


def plot_pr_curve(curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path) -> Path:
    """Precision-recall curve traced by the Hamming radius r = 0..bits, one line per method."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, c in curves.items():
        if "radius_P" in c:
            ax.plot(c["radius_R"], c["radius_P"], marker=".", label=name)
    ax.set_xlabel("recall (Hamming ball of radius r)")
    ax.set_ylabel("precision (empty ball = 0)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("PR curve over Hamming radius")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_precision_vs_radius(curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path) -> Path:
    """Precision of the Hamming ball against its radius, one line per method."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, c in curves.items():
        if "radius_P" in c:
            ax.plot(c["radius"], c["radius_P"], marker=".", label=name)
    ax.set_xlabel("Hamming radius r")
    ax.set_ylabel("precision (empty ball = 0)")
    ax.set_ylim(0, 1.02)
    ax.set_title("precision within Hamming radius")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_pk_curve(curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path) -> Path:
    """P@k against k (log scale), one line per method."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, c in curves.items():
        if "pk_curve" in c:
            ax.plot(c["pk_curve_k"], c["pk_curve"], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("k (retrieved items)")
    ax.set_ylabel("P@k (any shared label)")
    ax.set_ylim(0, 1.02)
    ax.set_title("P@k curve")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_training(curves: Mapping[str, Sequence[Mapping[str, float]]], path: str | Path,
                  title: str = "training", metric: str = "val_map@20",
                  metric_label: str = "selection mAP@20 (A), held-out train slice") -> Path:
    """Mean training loss and validation mAP@20 (A) per epoch, one line per run (``curves[name]`` = the
    per-epoch records of ``History.epochs``); the best validation epoch of each run is marked."""
    plt = _figure()
    fig, (ax_l, ax_m) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, epochs in curves.items():
        ep = [int(e["epoch"]) for e in epochs]
        ax_l.plot(ep, [e["loss"] for e in epochs], label=name)
        vals = [(int(e["epoch"]), float(e[metric])) for e in epochs if e.get(metric) is not None]
        if vals:
            line = ax_m.plot([v[0] for v in vals], [v[1] for v in vals], marker=".", label=name)[0]
            best = max(vals, key=lambda v: v[1])
            ax_m.plot([best[0]], [best[1]], marker="*", markersize=12, color=line.get_color())
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("mean training loss")
    ax_l.grid(alpha=0.3)
    ax_m.set_xlabel("epoch")
    ax_m.set_ylabel(metric_label)
    ax_m.grid(alpha=0.3)
    if len(curves) > 1:
        ax_m.legend(fontsize=8)
    fig.suptitle(title)
    return _save(plt, fig, path)


def write_report(out_dir: str | Path, results: Mapping[str, Mapping[str, Any]],
                 meta: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write eval.json, eval.md and the plots for several methods; ``results[name]`` = EvalResult.to_json()."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"meta": dict(meta or {}), "definitions": DEFINITIONS, "results": dict(results)}
    paths = {"json": write_json(out / "eval.json", doc)}
    table = format_table({n: r["metrics"] for n, r in results.items()}, markdown=True)
    md = out / "eval.md"
    atomic_write_text(md, table + "\n")
    paths["markdown"] = md
    curves = {n: r.get("curves", {}) for n, r in results.items()}
    if any("radius_P" in c for c in curves.values()):
        paths["pr_curve"] = plot_pr_curve(curves, out / "pr_curve.png")
        paths["radius_curve"] = plot_precision_vs_radius(curves, out / "radius_precision.png")
    if any("pk_curve" in c for c in curves.values()):
        paths["pk_curve"] = plot_pk_curve(curves, out / "pk_curve.png")
    return paths
