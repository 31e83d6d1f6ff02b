"""Issue 12 benchmark: MiLAN and the triplet samplers with model selection on a training slice, on a small
simulated archive, every row under variants A, C and tie-aware C, strict relevances and both protocols.

Everything runs through the `rsir` CLI (the commands are stored in the JSON):

1. `rsir simulate` (if the archive is missing), the classifier (its features are the float row and MiLAN's frozen
   input), MiLAN 64 bit (random triplets, early stopping), LSH 64 (and KSLSH 64 with --kslsh) on hand-crafted
   features; every model selects its epoch on the seeded 10 % slice of the training split
   (rsir.train.selection), never on validation or test items;
2. the sampler ablation: MiLAN 64 heads on the same frozen features with random, batch-hard, FaceNet semi-hard
   and rsir's two readings of the Sumbul et al. sampler (rsir.miners.multilabel_diverse: summed ranks, and
   relevance first; only the paper's abstract could be read), a fixed number of epochs
   (no early stopping), the per-epoch selection mAP@20 (A), and the epochs / seconds of training until a FIXED
   selection mAP (--target-map, the same number for every sampler) is first reached;
3. `rsir eval` of every index under the RSiM protocol (validation queries vs test archive) and leave-one-out over
   the test split, with mAP@20 (A), (C), tie-aware (C), strict relevances ([exact], [jac>=0.5]) and P@10.

Models, indexes and evaluations already in the work directory are reused (skipped), so a re-run with more
--ablation-seeds only trains the new heads.

Usage: python bench/sampler_bench.py --difficulty hard --n 2000 --out bench/results/samplers_hard.json
       python bench/sampler_bench.py --markdown --out bench/results/samplers_hard.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from milan_bench import Runner, epochs_to_reach, model_info  # noqa: E402
from train_bench import machine  # noqa: E402

from rsir.data.archive import open_archive  # noqa: E402
from rsir.eval.report import plot_training  # noqa: E402

SAMPLERS = ("random", "batch-hard", "semi-hard", "diverse", "diverse-rf")
SAMPLER_NAMES = {"random": "random multi-label triplets", "batch-hard": "batch-hard (Hermans et al.)",
                 "semi-hard": "semi-hard (FaceNet)",
                 "diverse": "Sumbul et al., rsir's Borda reading (paper body not read)",
                 "diverse-rf": "Sumbul et al., rsir's relevance-first reading (paper body not read)"}
KEYS = ("mAP@20(A)", "mAP@20(C)", "mAP@20(C,tie-aware)", "P@10", "mAP@20(C)[jac>=0.5]",
        "mAP@20(C,tie-aware)[jac>=0.5]", "mAP@20(C)[exact]", "mAP@20(C,tie-aware)[exact]")


def eval_all(run: Runner, archive: Path, index: Path, work: Path, name: str) -> dict[str, dict[str, float]]:
    """RSiM and leave-one-out (test split) metrics of one index."""
    out: dict[str, dict[str, float]] = {}
    for proto, extra in (("rsim", []), ("loo", ["--split", "test"])):
        ev = work / f"eval-{name}-{proto}"
        run("eval", str(archive), str(index), "--protocol", proto, *extra, "--k", "10,20", "--out", str(ev),
            skip_if=ev / "eval.json")
        data = json.loads((ev / "eval.json").read_text())
        res = next(iter(data["results"].values())) if "results" in data else next(iter(data.values()))
        m = res["metrics"] if "metrics" in res else res
        out[proto] = {k: round(float(m[k]), 4) for k in KEYS if k in m}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--difficulty", default="hard", choices=["easy", "medium", "hard"])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--archive", default=None, help="default /work/bench-data/issue12/sim-<difficulty>-2k")
    ap.add_argument("--work", default=None, help="default /work/bench-data/issue12/run-<difficulty>")
    ap.add_argument("--cls-epochs", type=int, default=10)
    ap.add_argument("--cls-width", type=int, default=8)
    ap.add_argument("--milan-epochs", type=int, default=60)
    ap.add_argument("--ablation-epochs", type=int, default=30)
    ap.add_argument("--target-map", type=float, default=None,
                    help="fixed selection mAP@20 (A) for epochs/seconds-to-target (default: 0.98 x the random "
                         "sampler's best, stated in the JSON)")
    ap.add_argument("--kslsh", action="store_true", help="also KSLSH 64 (slow to fit on a loaded machine)")
    ap.add_argument("--ablation-only", action="store_true",
                    help="only the classifier (float rows) and the sampler ablation, no MiLAN / LSH rows")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ablation-seeds", type=int, nargs="+", default=[0],
                    help="hash-head seeds of the sampler ablation (the classifier is the same for all); the first "
                         "seed's runs are the table rows and the plot, the others give the spread")
    ap.add_argument("--out", required=True)
    ap.add_argument("--markdown", action="store_true", help="print the tables of an existing --out JSON")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.out).read_text())))
        return
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    archive = Path(args.archive or f"/work/bench-data/issue12/sim-{args.difficulty}-2k")
    work = Path(args.work or f"/work/bench-data/issue12/run-{args.difficulty}")
    work.mkdir(parents=True, exist_ok=True)
    run = Runner(work / "commands.log")
    t_all = time.perf_counter()
    if not (archive / "manifest.json").exists():
        run("simulate", "--n", str(args.n), "--out", str(archive), "--difficulty", args.difficulty, "--seed", "0",
            "--bitemporal", "0", "--workers", "2", "--quiet")
    arch = open_archive(archive)
    counts = {str(k): int(v) for k, v in arch.catalog["split"].value_counts().items()}
    doc: dict[str, Any] = {
        "what": "SIMULATED data; model selection on the seeded 10 % slice of the training split; RSiM (validation "
                "queries vs test archive) and leave-one-out over the test split",
        "machine": {**machine(), "torch_threads_per_command": args.threads,
                    "loadavg_start": [round(v, 2) for v in os.getloadavg()]},
        "archive": {"path": str(archive), "difficulty": args.difficulty, "items": len(arch), "splits": counts},
        "args": vars(args), "rows": {}}
    cls = work / "classifier"
    tr = run("train", str(archive), "--method", "classifier", "--epochs", str(args.cls_epochs), "--patience",
             str(args.cls_epochs), "--width", str(args.cls_width), "--schedule", "cosine", "--out", str(cls),
             "--preload", "yes", "--workers", "0", "--seed", str(args.seed), "--quiet", skip_if=cls / "config.json")
    idx = work / "index-float"
    run("index", str(archive), "--model", str(cls), "--out", str(idx), "--no-progress", skip_if=idx / "manifest.json")
    doc["rows"]["classifier float features"] = {"train": model_info(cls), "train_wall_s": tr.get("seconds"),
                                                **eval_all(run, archive, idx, work, "float")}
    m = work / "milan64"
    if args.ablation_only:
        run.commands.append({"cmd": "(MiLAN 64 main row and LSH skipped: --ablation-only)", "seconds": None})
    tr = {} if args.ablation_only else run(
        "train", str(archive), "--method", "milan", "--features", str(cls), "--bits", "64", "--sampler", "random",
        "--epochs", str(args.milan_epochs), "--patience", "15", "--out", str(m), "--seed", str(args.seed),
        "--workers", "0", "--quiet", skip_if=m / "config.json")
    idx = work / "index-milan64"
    if not args.ablation_only:
        run("index", str(archive), "--model", str(m), "--out", str(idx), "--no-progress")
        doc["rows"]["MiLAN 64 (random, early stopping)"] = {
            "train": model_info(m), "train_wall_s": tr.get("seconds"), **eval_all(run, archive, idx, work, "milan64")}
    for method in ([] if args.ablation_only else ["lsh"] + (["kslsh"] if args.kslsh else [])):
        idx = work / f"index-{method}64"
        rec = run("index", str(archive), "--method", method, "--bits", "64", "--out", str(idx), "--no-progress")
        doc["rows"][f"{method.upper()} 64 (hand-crafted)"] = {"index_wall_s": rec.get("seconds"),
                                                             **eval_all(run, archive, idx, work, method)}
    abl: dict[str, Any] = {}
    for seed in args.ablation_seeds:
        for sampler in SAMPLERS:
            # seed 0 keeps the directory names of the single-seed runs, so they are reused
            tag = sampler if seed == 0 else f"{sampler}-s{seed}"
            m = work / f"ablation-{tag}"
            tr = run("train", str(archive), "--method", "milan", "--features", str(cls), "--bits", "64", "--sampler",
                     sampler, "--epochs", str(args.ablation_epochs), "--patience", str(args.ablation_epochs + 1),
                     "--out", str(m), "--seed", str(seed), "--workers", "0", "--quiet", skip_if=m / "config.json")
            idx = work / f"index-ablation-{tag}"
            run("index", str(archive), "--model", str(m), "--out", str(idx), "--no-progress",
                skip_if=idx / "manifest.json")
            info = json.loads((m / "config.json").read_text())["info"]
            rec = {"seed": seed, "train": model_info(m), "train_wall_s": tr.get("seconds"),
                   "distinct_codes_train": info.get("distinct_codes_train"),
                   "triplets_per_batch_median": float(np.median([h.get("triplets", 0) for h in info["history"]])),
                   **eval_all(run, archive, idx, work, f"ablation-{tag}")}
            if seed == args.ablation_seeds[0]:
                abl[sampler] = rec
            else:
                abl[sampler].setdefault("other_seeds", []).append(rec)
    curves = {k: a["train"]["val_map@20_A_per_epoch"] for k, a in abl.items()}
    target = args.target_map if args.target_map is not None else round(0.98 * max(curves["random"]), 4)
    for a in abl.values():
        for r in [a, *a.get("other_seeds", [])]:
            e = epochs_to_reach(r["train"]["val_map@20_A_per_epoch"], target)
            r["epochs_to_target"] = e
            r["seconds_to_target"] = round(sum(r["train"]["seconds_per_epoch"][:e]), 2) if e else None
    png = Path(args.out).with_name(Path(args.out).stem + "_curves.png")
    plot_training({k: json.loads((work / f"ablation-{k}" / "config.json").read_text())["info"]["history"]
                   for k in SAMPLERS}, png,
                  f"MiLAN 64 bit, samplers, simulated {args.difficulty} ({len(arch)} items)")
    doc["ablation"] = {"bits": 64, "epochs": args.ablation_epochs, "early_stopping": False,
                       "target_selection_map@20_A": target,
                       "target_rule": "given (--target-map)" if args.target_map is not None else
                       "0.98 x the best selection mAP@20 (A) of the random sampler",
                       "samplers": abl, "plot": str(png.relative_to(ROOT)) if png.is_relative_to(ROOT) else str(png)}
    doc["commands"] = run.commands
    doc["total_wall_s"] = round(time.perf_counter() - t_all, 1)
    doc["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2))
    print(markdown(doc))


def markdown(doc: dict[str, Any]) -> str:
    """The BENCHMARKS.md tables of a results JSON."""
    def f(v: Any) -> str:
        return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    cols = ["mAP@20(A)", "mAP@20(C)", "mAP@20(C,tie-aware)", "P@10", "mAP@20(C)[jac>=0.5]", "mAP@20(C)[exact]"]
    head = "| row | protocol | " + " | ".join(cols) + " |"
    lines = [head, "|---|---|" + "---:|" * len(cols)]
    rows = dict(doc["rows"])
    rows.update({f"ablation: {SAMPLER_NAMES.get(k, k)}": v for k, v in doc.get("ablation", {}).get("samplers",
                                                                                                  {}).items()})
    for name, r in rows.items():
        for proto in ("rsim", "loo"):
            if proto in r:
                lines.append(f"| {name} | {proto} | " + " | ".join(f(r[proto].get(c)) for c in cols) + " |")
    out = "\n".join(lines)
    abl = doc.get("ablation")
    if abl:
        t = abl["target_selection_map@20_A"]
        rows2 = [f"| sampler | best selection mAP@20 (A) (epoch) | epochs to {t:.4f} | s to {t:.4f} | s per epoch | "
                 "triplets per batch | distinct codes (train split) |", "|---|---:|---:|---:|---:|---:|---:|"]
        for k, a in abl["samplers"].items():
            tr = a["train"]
            spe = float(np.median(tr["seconds_per_epoch"])) if tr["seconds_per_epoch"] else None
            rows2.append(f"| {SAMPLER_NAMES.get(k, k)} | {f(tr['val_map@20_A_best'])} ({tr['best_epoch']}) | "
                         f"{f(a.get('epochs_to_target')) if a.get('epochs_to_target') else 'never'} | "
                         f"{f(a.get('seconds_to_target'))} | {f(spe)} | {f(a.get('triplets_per_batch_median'))} | "
                         f"{f(a.get('distinct_codes_train'))} |")
        out += "\n\n" + "\n".join(rows2)
        if any(a.get("other_seeds") for a in abl["samplers"].values()):
            out += "\n\n" + seeds_table(abl)
    return out


def seeds_table(abl: dict[str, Any]) -> str:
    """Mean and range over the hash-head seeds of the ablation: selection mAP, epochs to target, test rows."""
    t = abl["target_selection_map@20_A"]
    lines = [f"| sampler | seeds | best selection mAP@20 (A), mean (min-max) | last 5 epochs, mean (min-max) | "
             f"epochs to {t:.4f} (each seed) | RSiM mAP@20 (C), mean (min-max) | loo mAP@20 (C), mean (min-max) |",
             "|---|---:|---:|---:|---:|---:|---:|"]

    def mr(v: list[float]) -> str:
        return f"{np.mean(v):.4f} ({min(v):.4f}-{max(v):.4f})"

    for k, a in abl["samplers"].items():
        runs = [a, *a.get("other_seeds", [])]
        best = [r["train"]["val_map@20_A_best"] for r in runs]
        ep = [r.get("epochs_to_target") for r in runs]
        last = [float(np.mean(r["train"]["val_map@20_A_per_epoch"][-5:])) for r in runs]
        lines.append(f"| {SAMPLER_NAMES.get(k, k)} | {len(runs)} | {mr(best)} | {mr(last)} | "
                     f"{', '.join(str(e) if e else 'never' for e in ep)} | "
                     f"{mr([r['rsim']['mAP@20(C)'] for r in runs])} | {mr([r['loo']['mAP@20(C)'] for r in runs])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
