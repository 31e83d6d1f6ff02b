"""ANNEAL active learning with a simulated oracle: mAP@20 (A) of the retrained head after each round against
the number of annotated pairs, for ANNEAL-MGUE, ANNEAL-BCGUE, uncertainty alone, diversity alone and random
pairs, each over several seeds, with two oracles:

- ``shared``: similar when the two patches share at least one label (mAP relevance: share a label);
- ``exact``: similar only when their label sets are identical (mAP relevance: identical label sets).

Frozen features: the vectors of INDEX for the archive's items: the standardised hand-crafted features of
``rsir index --method float``, or learned ones, e.g. the float embeddings of a label-free SS-CM encoder
(``rsir index --model SSCM --float``). Head: linear, or ``--hidden N`` for a 2-layer MLP. Queries:
``--queries`` items of ``--query-split`` (test; validation to choose settings); database: every other item;
the pool of candidate pairs and every annotated pair come from the training split only. Each seed draws its own
pool, initial pairs and queries are fixed across strategies (seed 0 of the query draw), so the strategies of one
seed see the same pool and P0.

Usage (the numbers in BENCHMARKS.md):
  rsir simulate --n 6000 --out /tmp/anneal/sim6k --difficulty hard --seed 0 --size 60 --bitemporal 0
  rsir index /tmp/anneal/sim6k --method float --out /tmp/anneal/idx-float
  nice -n 10 python bench/anneal_bench.py --index /tmp/anneal/idx-float
Writes bench/results/anneal.json (after every run, so an interrupted benchmark keeps what it finished) and
bench/results/anneal.png. Learned features, label-free (BENCHMARKS.md, "ANNEAL on learned features"):
  rsir train /tmp/anneal/sim6k --method ss-cm --epochs 10 --out /tmp/anneal/sscm
  rsir index /tmp/anneal/sim6k --model /tmp/anneal/sscm --float --modality s2 --out /tmp/anneal/idx-sscm
  nice -n 10 python bench/anneal_bench.py --index /tmp/anneal/idx-sscm --hidden 256 \
      --out bench/results/anneal_sscm_mlp.json
The encoder itself trained end to end each round (the SS-CM model's S2 branch; BENCHMARKS.md, "ANNEAL with the
encoder trained end to end"), and the learning curve of random pairs alone:
  nice -n 10 python bench/anneal_bench.py --index /tmp/anneal/idx-sscm --encoder /tmp/anneal/sscm --steps 100 \
      --batch 64 --lr 1e-5 --oracles shared --out bench/results/anneal_e2e.json
  nice -n 10 python bench/anneal_bench.py ... --learning-curve 100,300,900,3000,10000    # -> <out>_curve.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _cpu() -> str:
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.processor())


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean curves per (oracle, strategy) and the target check: the annotations ANNEAL needs to reach random's
    final mean mAP, as a share of random's annotations."""
    out: dict[str, Any] = {}
    for oracle in sorted({r["oracle"] for r in runs}):
        curves: dict[str, Any] = {}
        for strat in sorted({r["strategy"] for r in runs if r["oracle"] == oracle}):
            rs = [r for r in runs if r["oracle"] == oracle and r["strategy"] == strat]
            n = min(len(r["curve"]) for r in rs)
            labelled = [rs[0]["curve"][t]["labelled"] for t in range(n)]
            maps = np.array([[r["curve"][t]["map20"] for t in range(n)] for r in rs])
            sims = np.array([[r["curve"][t]["similar"] for t in range(n)] for r in rs])
            curves[strat] = {"labelled": labelled, "map20_mean": maps.mean(0).round(4).tolist(),
                             "map20_std": maps.std(0).round(4).tolist(), "similar_mean": sims.mean(0).tolist(),
                             "seeds": [r["seed"] for r in rs]}
        target: dict[str, Any] = {}
        if "random" in curves:
            final = curves["random"]["map20_mean"][-1]
            budget = curves["random"]["labelled"][-1]
            target["random_final_map20"] = final
            target["random_pairs"] = budget
            for strat, c in curves.items():
                if strat == "random":
                    continue
                reach = next((lab for lab, m in zip(c["labelled"], c["map20_mean"], strict=True) if m >= final),
                             None)
                target[strat] = {"pairs_to_reach": reach,
                                 "share_of_random": None if reach is None else round(reach / budget, 3),
                                 "met": reach is not None and reach <= budget / 2,
                                 "final_map20": c["map20_mean"][-1]}
        out[oracle] = {"curves": curves, "target": target}
    return out


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    oracles = list(summary)
    fig, axes = plt.subplots(1, len(oracles), figsize=(6 * len(oracles), 4.2), squeeze=False)
    for ax, oracle in zip(axes[0], oracles, strict=True):
        for strat, c in summary[oracle]["curves"].items():
            m, s = np.array(c["map20_mean"]), np.array(c["map20_std"])
            ax.plot(c["labelled"], m, marker="o", ms=3, label=strat)
            ax.fill_between(c["labelled"], m - s, m + s, alpha=0.12)
        tgt = summary[oracle]["target"]
        if "random_final_map20" in tgt:
            ax.axhline(tgt["random_final_map20"], color="grey", ls=":", lw=1)
            ax.axvline(tgt["random_pairs"] / 2, color="grey", ls=":", lw=1)
        rel = "share a label" if oracle == "shared" else "identical label sets"
        ax.set_title(f"oracle '{oracle}' (relevant: {rel})")
        ax.set_xlabel("annotated pairs")
        ax.set_ylabel("mAP@20 (A)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("ANNEAL on a simulated hard archive (mean and sd over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def seed_pools(labels: np.ndarray, train: np.ndarray, args: argparse.Namespace
               ) -> Iterator[tuple[str, int, np.ndarray, np.ndarray, np.ndarray]]:
    """(oracle, seed, pool pairs i, j, their answers) for every oracle and seed: the pool each seed draws."""
    from rsir.feedback import anneal as A

    for oracle in args.oracles:
        for seed in args.seeds:
            pi, pj = A.sample_pool(train, args.pool, np.random.default_rng(seed))
            yield oracle, seed, pi, pj, A.label_oracle(labels, oracle)(pi, pj)


def head_ablation(x: np.ndarray, labels: np.ndarray, train: np.ndarray, q: np.ndarray, db: np.ndarray,
                  args: argparse.Namespace, meta: dict[str, Any]) -> None:
    """mAP@20 of heads trained on n random pairs: linear (the default) against one hidden layer of 256."""
    from rsir.feedback import anneal as A
    from rsir.storage import atomic_write_json

    rows = []
    for oracle, seed, pi, pj, y in seed_pools(labels, train, args):
        for hidden in (0, 256):
            for n in (100, 300, 600, 900):
                cfg = A.AnnealConfig(hidden=hidden, seed=seed)
                t0 = time.process_time()
                head = A.train_head(x, pi[:n], pj[:n], y[:n], cfg)
                rows.append({"oracle": oracle, "seed": seed, "hidden": hidden, "pairs": n,
                             "cpu_s": round(time.process_time() - t0, 2),
                             "map20": round(A.retrieval_map(head.embed(x), q, db, labels, relevance=oracle), 4)})
                print(rows[-1], flush=True)
    summary = {}
    for oracle in args.oracles:
        for hidden in (0, 256):
            for n in (100, 300, 600, 900):
                v = [r["map20"] for r in rows if (r["oracle"], r["hidden"], r["pairs"]) == (oracle, hidden, n)]
                summary[f"{oracle}/hidden{hidden}/{n}"] = round(float(np.mean(v)), 4)
    atomic_write_json(beside(args.out, "head", ".json"), {**meta, "summary": summary, "runs": rows})
    print(json.dumps(summary, indent=1))


def learning_curve(x: np.ndarray, labels: np.ndarray, train: np.ndarray, q: np.ndarray, db: np.ndarray,
                   args: argparse.Namespace, meta: dict[str, Any], model: Any, train_cfg: dict[str, Any]) -> None:
    """mAP@20 of the metric model (the head on x, or the end-to-end encoder) trained on the first n random pool
    pairs of each seed, for each n of --learning-curve: the curve random selection follows, and whether it still
    climbs where the loop ends."""
    from rsir.feedback import anneal as A
    from rsir.storage import atomic_write_json

    metric = model if model is not None else A.FrozenHead(x)
    sizes = [int(v) for v in args.learning_curve.split(",")]
    rows = []
    for oracle, seed, pi, pj, y in seed_pools(labels, train, args):
        for n in sizes:
            n = min(n, pi.size)
            cfg = A.AnnealConfig(hidden=args.hidden, seed=seed, **train_cfg)
            t0 = time.perf_counter()
            state = metric.fit(pi[:n], pj[:n], y[:n], cfg, seed)
            rows.append({"oracle": oracle, "seed": seed, "pairs": n,
                         "map20": round(A.retrieval_map(metric.embed(state), q, db, labels, relevance=oracle), 4),
                         "seconds": round(time.perf_counter() - t0, 1)})
            print(rows[-1], flush=True)
    summary = {}
    for oracle in args.oracles:
        for n in sorted({r["pairs"] for r in rows}):
            v = [r["map20"] for r in rows if (r["oracle"], r["pairs"]) == (oracle, n)]
            summary[f"{oracle}/{n}"] = {"mean": round(float(np.mean(v)), 4), "sd": round(float(np.std(v)), 4)}
    atomic_write_json(beside(args.out, "curve", ".json"), {**meta, "summary": summary, "runs": rows,
                                                            "loadavg_end": _load()})
    print(json.dumps(summary, indent=1))


def _auc(d: np.ndarray, y: np.ndarray) -> float:
    """P(a similar pair is nearer than a dissimilar one) of pool distances (0.5: no separation)."""
    from scipy.stats import rankdata

    r = rankdata(-d)
    n1, n0 = int(y.sum()), int((~y).sum())
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)) if n1 and n0 else float("nan")


def _entropy(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return float(-(p * np.log2(p) + (1 - p) * np.log2(1 - p)))


def diagnose(x: np.ndarray, labels: np.ndarray, train: np.ndarray, q: np.ndarray, db: np.ndarray,
             args: argparse.Namespace, meta: dict[str, Any]) -> None:
    """Why selection does (not) beat random: (1) the learning curve of random pairs up to the whole pool and
    with 4x the training steps (saturation, under-training); (2) how well this round's metric separates the
    pool's similar and dissimilar pairs, where MGUE's tau sits, and how uncertain ANNEAL's candidates really
    are (their share of similar answers and its entropy, against random pairs); (3) an unrealisable reference
    selection that knows the answers and asks the pairs with the largest contrastive loss under the current
    model, with and without ANNEAL's clustering. Writes <out>_diagnosis.json and .png."""
    from rsir.feedback import anneal as A
    from rsir.storage import atomic_write_json

    curve, separation, reference = [], [], []
    for oracle in args.oracles:
        orc = A.label_oracle(labels, oracle)
        for seed in args.seeds:
            rng = np.random.default_rng(seed)
            pi, pj = A.sample_pool(train, args.pool, rng)
            y = orc(pi, pj)
            for n, steps in [(n, 100) for n in (100, 450, 900, 2000, 5000, 10000)] + \
                            [(n, 400) for n in (100, 900, 10000)]:
                n = min(n, pi.size)
                head = A.train_head(x, pi[:n], pj[:n], y[:n], A.AnnealConfig(seed=seed, steps=steps, hidden=args.hidden))
                z = head.embed(x)
                d = A.pair_distances(z, pi, pj)
                curve.append({"oracle": oracle, "seed": seed, "pairs": n, "steps": steps,
                              "map20": round(A.retrieval_map(z, q, db, labels, relevance=oracle), 4),
                              "pool_auc": round(_auc(d, y), 3)})
                if steps != 100 or n not in (100, 450, 900):
                    continue
                rest = np.arange(n, d.size)
                row: dict[str, Any] = {"oracle": oracle, "seed": seed, "pairs": n,
                                       "pool_similar_share": round(float(y.mean()), 4)}
                for how in A.THRESHOLDS:
                    tau = A.mgue_threshold(d[:n], y[:n], how, fallback=float(np.median(d)))
                    near = rest[np.argsort(np.abs(d[rest] - tau), kind="stable")[:4 * args.budget]]
                    row[how] = {"tau": round(tau, 4), "tau_quantile": round(float((d < tau).mean()), 3),
                                "candidates_similar_share": round(float(y[near].mean()), 4),
                                "candidates_entropy_bits": round(_entropy(float(y[near].mean())), 3)}
                row["random_entropy_bits"] = round(_entropy(float(y[rest].mean())), 3)
                clf = A.train_pair_classifier(A.pair_features(z, pi[:n], pj[:n]), y[:n], seed=seed)
                p = clf(A.pair_features(z, pi[rest], pj[rest]))
                near = rest[np.argsort(np.abs(p - 0.5), kind="stable")[:4 * args.budget]]
                row["bcgue"] = {"classifier_auc": round(_auc(-p, y[rest]), 3),
                                "distance_auc": round(_auc(d[rest], y[rest]), 3),
                                "candidates_similar_share": round(float(y[near].mean()), 4),
                                "candidates_entropy_bits": round(_entropy(float(y[near].mean())), 3)}
                edges = np.quantile(d, np.linspace(0, 1, 11))
                dec = np.clip(np.searchsorted(edges, d, side="right") - 1, 0, 9)
                row["similar_share_by_distance_decile"] = [round(float(y[dec == k].mean()), 3) for k in range(10)]
                separation.append(row)
                print(row, flush=True)
        # (3) the reference selection: uncertainty replaced by the true loss (needs the answers: not realisable)
        def true_loss(strategy: str, z: np.ndarray, pi: np.ndarray, pj: np.ndarray, *rest: Any,
                      orc: Any = orc) -> tuple[np.ndarray, None]:
            d = A.pair_distances(z, pi, pj)
            return np.where(orc(pi, pj), d ** 2, np.maximum(0.0, 1.0 - d) ** 2), None

        saved = A.uncertainty
        A.uncertainty = true_loss  # type: ignore[assignment]
        try:
            for name, strat in (("oracle-loss", "uncertainty"), ("oracle-loss+clustering", "anneal-mgue")):
                for seed in args.seeds:
                    cfg = A.AnnealConfig(strategy=strat, budget=args.budget, rounds=args.rounds,
                                         initial=args.initial, pool=args.pool, hidden=args.hidden, seed=seed)
                    recs, _ = A.run(x, train, orc, cfg, evaluate=lambda z, o=oracle: {
                        "map20": A.retrieval_map(z, q, db, labels, relevance=o)})
                    reference.append({"oracle": oracle, "strategy": name, "seed": seed,
                                      "curve": [{"labelled": r.labelled, "similar": r.similar,
                                                 "new_similar": r.new_similar,
                                                 "map20": round(r.metrics["map20"], 4)} for r in recs]})
                    print(name, oracle, seed, [c["map20"] for c in reference[-1]["curve"]], flush=True)
        finally:
            A.uncertainty = saved  # type: ignore[assignment]
    summary: dict[str, Any] = {"learning_curve": {}, "reference": summarise(reference)}
    for oracle in args.oracles:
        for steps in (100, 400):
            rows = [r for r in curve if r["oracle"] == oracle and r["steps"] == steps]
            for n in sorted({r["pairs"] for r in rows}):
                v = [r for r in rows if r["pairs"] == n]
                summary["learning_curve"][f"{oracle}/{steps} steps/{n} pairs"] = {
                    "map20": round(float(np.mean([r["map20"] for r in v])), 4),
                    "pool_auc": round(float(np.mean([r["pool_auc"] for r in v])), 3)}
    data = {**meta, "summary": summary, "learning_curve": curve, "separation": separation,
            "reference": reference, "loadavg_end": _load()}
    atomic_write_json(beside(args.out, "diagnosis", ".json"), data)
    plot_diagnosis(data, beside(args.out, "diagnosis", ".png"))
    print(json.dumps(summary["learning_curve"], indent=1))


def beside(out: str, what: str, suffix: str) -> Path:
    """A side result's path next to ``--out``, named after it (anneal.json -> anneal_diagnosis.json), so variant
    runs with their own --out do not overwrite the main run's side results."""
    p = Path(out)
    return p.with_name(f"{p.stem}_{what}{suffix}")


def plot_diagnosis(data: dict[str, Any], path: Path) -> None:
    """Left: mAP@20 of random pairs up to the whole pool, and of the oracle-loss reference selection; right:
    the share of similar pairs by distance decile of the metric trained on 100, 450 and 900 random pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    oracles = sorted({r["oracle"] for r in data["learning_curve"]}, reverse=True)
    fig, axes = plt.subplots(len(oracles), 2, figsize=(11, 4 * len(oracles)), squeeze=False)
    for row, oracle in zip(axes, oracles, strict=True):
        ax = row[0]
        for steps in (100, 400):
            pts = sorted({r["pairs"] for r in data["learning_curve"] if r["oracle"] == oracle and r["steps"] == steps})
            m = [np.mean([r["map20"] for r in data["learning_curve"]
                          if (r["oracle"], r["steps"], r["pairs"]) == (oracle, steps, n)]) for n in pts]
            ax.plot(pts, m, marker="o", ms=3, label=f"random pairs, {steps} steps")
        for name, c in data["summary"]["reference"].get(oracle, {}).get("curves", {}).items():
            ax.plot(c["labelled"], c["map20_mean"], marker=".", ls="--", label=f"{name} (knows the answers)")
        ax.set_xscale("log")
        ax.set_xlabel("annotated pairs")
        ax.set_ylabel("mAP@20 (A)")
        ax.set_title(f"oracle '{oracle}': learning curve")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax = row[1]
        for n in sorted({r["pairs"] for r in data["separation"] if r["oracle"] == oracle}):
            rows = [r for r in data["separation"] if r["oracle"] == oracle and r["pairs"] == n]
            ax.plot(range(1, 11), np.mean([r["similar_share_by_distance_decile"] for r in rows], 0), marker="o",
                    ms=3, label=f"metric after {n} random pairs")
        base = np.mean([r["pool_similar_share"] for r in data["separation"] if r["oracle"] == oracle])
        ax.axhline(base, color="grey", ls=":", lw=1, label="all pool pairs")
        ax.axhline(0.5, color="black", ls="-", lw=0.5)
        ax.set_xlabel("distance decile in the current metric (1 = nearest)")
        ax.set_ylabel("share answered similar")
        ax.set_title(f"oracle '{oracle}': how the distances separate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", required=True, help="INDEX built with rsir index --method float")
    ap.add_argument("--archive", default=None, help="the archive (default: the one the index records)")
    ap.add_argument("--strategies", nargs="+", default=None)
    ap.add_argument("--oracles", nargs="+", default=["shared", "exact"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--initial", type=int, default=100)
    ap.add_argument("--pool", type=int, default=10000)
    ap.add_argument("--pool-from", choices=["uniform", "knn"], default="uniform",
                    help="the candidate pairs: uniform pairs of training patches, or each with its --neighbours "
                         "nearest in the frozen features")
    ap.add_argument("--neighbours", type=int, default=10)
    ap.add_argument("--threshold", choices=["midpoint", "error"], default="midpoint", help="MGUE's tau")
    ap.add_argument("--fine-tune", action="store_true",
                    help="start each round's head from the last one instead of retraining from the initialisation")
    ap.add_argument("--candidates", type=int, default=4,
                    help="ANNEAL clusters the candidates x budget most uncertain pairs (default 4)")
    ap.add_argument("--hidden", type=int, default=0,
                    help="hidden width of the head (0: linear, the default; e.g. 256: a 2-layer MLP)")
    ap.add_argument("--encoder", default=None,
                    help="end to end: retrain this cross-modal model's S2 branch (encoder + projection, e.g. the "
                         "label-free SS-CM model the index was built from) each round instead of a head on the "
                         "index's frozen vectors (rsir.methods.anneal_encoder)")
    ap.add_argument("--encoder-init", choices=["pretrained", "random"], default="pretrained",
                    help="start --encoder's branch from its trained weights, or from a seeded random initialisation")
    ap.add_argument("--encoder-modality", default="s2", help="the branch of --encoder that is trained (default s2)")
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps per round (default: AnnealConfig's)")
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default: AnnealConfig's)")
    ap.add_argument("--batch", type=int, default=None, help="pairs per step (default: AnnealConfig's)")
    ap.add_argument("--learning-curve", default=None, metavar="N,N,...",
                    help="instead: the model trained on the first N random pool pairs of each seed, for each N, "
                         "written to <out>_curve.json (random pairs only: is the curve still climbing?)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--query-split", choices=["test", "validation"], default="test",
                    help="split the mAP queries come from: validation to choose settings, test to report")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--head-ablation", action="store_true",
                    help="instead: linear vs MLP head trained on the first n random pairs (n = 100, 300, 600, 900), "
                         "written to <out>_head.json")
    ap.add_argument("--diagnose", action="store_true",
                    help="instead: learning curve of random pairs, metric separation and MGUE's tau, and the "
                         "oracle-loss reference selection, written to <out>_diagnosis.json/.png")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "anneal.json"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from rsir.feedback import anneal as A
    from rsir.pipeline import IndexDir
    from rsir.storage import atomic_write_json

    idx = IndexDir.open(args.index)
    arc = idx.archive(args.archive)
    if arc is None:
        raise SystemExit(f"{args.index}: the archive it records is gone; pass --archive")
    ids = list(arc.ids)
    # the index's own modality (a cross-modal index holds the vectors of both; vectors() defaults to the first)
    x = np.asarray(idx.vectors(ids, idx.manifest.get("modality")), np.float32)
    labels = np.asarray(arc.labels)
    train = arc.split_positions("train")
    held = arc.split_positions(args.query_split)
    q = np.sort(np.random.default_rng(0).choice(held, min(args.queries, held.size), replace=False))
    db = np.setdiff1d(np.arange(len(ids)), q)
    strategies = args.strategies or list(A.STRATEGIES)
    meta = {"machine": {"cpu": _cpu(), "cores": os.cpu_count(), "torch_threads": args.threads,
                        "python": platform.python_version(), "torch": torch.__version__},
            "data": {"simulated": True, "archive": str(arc.path), "items": len(ids), "features": int(x.shape[1]),
                     "train_items": int(train.size), "queries": int(q.size), "database": int(db.size),
                     "manifest_info": arc.manifest.get("info", {})},
            "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
            "metric": "mAP@20 variant A (AP@k divided by the relevant items in the top k), Euclidean distance, "
                      "ties by archive position, query left out of its own ranking",
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg_start": _load()}
    base = {o: A.retrieval_map(x, q, db, labels, relevance=o) for o in args.oracles}
    meta["frozen_features_map20"] = {o: round(v, 4) for o, v in base.items()}
    meta["vectors_modality"] = idx.manifest.get("modality")
    model = None
    if args.encoder:
        from rsir.methods.anneal_encoder import from_crossmodal

        model = from_crossmodal(args.encoder, arc, args.encoder_modality, pretrained=args.encoder_init == "pretrained")
        meta["data"]["encoder"] = {"model": str(args.encoder), "modality": args.encoder_modality,
                                   "init": args.encoder_init,
                                   "images": list(model.images.shape),
                                   "pretrained_map20": {o: round(A.retrieval_map(model.embed(model.pretrained), q, db,
                                                                                 labels, relevance=o), 4)
                                                        for o in args.oracles}}
    train_cfg = {k: v for k, v in (("steps", args.steps), ("lr", args.lr), ("batch", args.batch)) if v is not None}
    if args.learning_curve:
        learning_curve(x, labels, train, q, db, args, meta, model, train_cfg)
        return
    if args.head_ablation:
        head_ablation(x, labels, train, q, db, args, meta)
        return
    if args.diagnose:
        diagnose(x, labels, train, q, db, args, meta)
        return
    runs: list[dict[str, Any]] = []
    out = Path(args.out)
    for oracle in args.oracles:
        orc = A.label_oracle(labels, oracle)
        for seed in args.seeds:
            for strat in strategies:
                cfg = A.AnnealConfig(strategy=strat, budget=args.budget, rounds=args.rounds, initial=args.initial,
                                     pool=args.pool, pool_from=args.pool_from, neighbours=args.neighbours,
                                     threshold=args.threshold, candidates=args.candidates,
                                     fine_tune=args.fine_tune, hidden=args.hidden, seed=seed, **train_cfg)
                t0 = time.perf_counter()
                recs, _ = A.run(x, train, orc, cfg, evaluate=lambda z, o=oracle: {
                    "map20": A.retrieval_map(z, q, db, labels, relevance=o)}, model=model)
                runs.append({"oracle": oracle, "strategy": strat, "seed": seed, "config": cfg.to_json(),
                             "seconds": round(time.perf_counter() - t0, 1), "loadavg": _load(),
                             "curve": [{"round": r.round, "labelled": r.labelled, "similar": r.similar,
                                        "new_similar": r.new_similar, "tau": r.tau,
                                        "map20": round(r.metrics["map20"], 4), "seconds": round(r.seconds, 2)}
                                       for r in recs]})
                print(f"{oracle} seed {seed} {strat}: " + " ".join(
                    f"{c['labelled']}:{c['map20']:.4f}" for c in runs[-1]["curve"]) + f" ({runs[-1]['seconds']} s)",
                    flush=True)
                summary = summarise(runs)
                atomic_write_json(out, {**meta, "summary": summary, "runs": runs, "loadavg_end": _load(),
                                        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    plot(summarise(runs), out.with_suffix(".png"))
    print(json.dumps({o: s["target"] for o, s in summarise(runs).items()}, indent=1))


if __name__ == "__main__":
    main()
