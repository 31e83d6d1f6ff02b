"""MiLAN benchmark on a simulated hard archive, RSiM protocol (validation queries, test archive).

Everything runs through the `rsir` CLI, so the commands this script prints (and stores in the JSON) are the
reproduce commands:

1. the multi-label classifier (its pooled features are the float baseline and MiLAN's frozen features),
2. MiLAN (frozen classifier features + 3-layer hash head, random multi-label triplets) at 32/64/128 bits,
3. the classic baselines KSLSH and LSH on hand-crafted features (`rsir index --method kslsh|lsh`),
4. `rsir eval --protocol rsim --k 20` for each index: mAP@20 (variant A), WAP@20, NDCG@20 (exp gain),
5. the sampling ablation: MiLAN 64 bit with random vs batch-hard vs diverse sampling, a fixed number of epochs
   without early stopping, per-epoch validation mAP@20 (A) (validation queries vs train+validation) and the
   epochs / seconds needed to reach a fixed mAP;
6. (in process, labelled so) KSLSH and LSH fitted on the classifier's features instead of hand-crafted ones.

Wall times are per command on this machine (2 shared cores); os.getloadavg() is recorded around each one.
Usage: .venv/bin/python bench/milan_bench.py [--n 6000] [--work /work/bench-data/milan/run]
       [--cls-epochs 15] [--milan-epochs 100] [--out bench/results/milan.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from train_bench import machine  # noqa: E402

from rsir.data.archive import open_archive  # noqa: E402
from rsir.eval.protocols import evaluate_full, split_queries  # noqa: E402
from rsir.eval.report import plot_training  # noqa: E402
from rsir.hashing import hasher_class  # noqa: E402
from rsir.pipeline import IndexDir  # noqa: E402

METRICS = {"mAP@20(A)": "mAP@20 (A)", "WAP@20": "WAP@20", "NDCG@20(exp)": "NDCG@20 (exp gain)"}
SAMPLERS = ("random", "batch-hard", "diverse")


def rsir_bin() -> str:
    exe = Path(sys.executable).parent / "rsir"
    return str(exe) if exe.exists() else "rsir"


class Runner:
    """Runs rsir commands, times them, records load and the exact command lines. With ``one_thread`` each
    command runs as ``python -m rsir`` from this source tree with OMP_NUM_THREADS=1 (benchmarks that compare
    paths on a shared machine)."""

    def __init__(self, log: Path, one_thread: bool = False) -> None:
        self.log = log
        self.commands: list[dict[str, Any]] = []
        self.env = ({**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"} if one_thread
                    else None)

    def __call__(self, *args: str, skip_if: Path | None = None) -> dict[str, Any]:
        cmd = [sys.executable, "-m", "rsir", *args] if self.env else [rsir_bin(), *args]
        text = "rsir " + " ".join(shlex.quote(a) for a in args)
        if skip_if is not None and skip_if.exists():
            rec = next((c for c in self.commands if c["cmd"] == text), None)
            print(f"[skip, exists] {text}", flush=True)
            if rec is None:  # made by an earlier run: listed as skipped
                rec = {"cmd": text, "seconds": None, "skipped": True}
                self.commands.append(rec)
            return rec
        print(f"$ {text}", flush=True)
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        with self.log.open("a") as fh:
            fh.write(f"\n$ {text}\n")
            fh.flush()
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=self.env, check=False)
        secs = time.perf_counter() - t0
        rec = {"cmd": text, "seconds": round(secs, 2), "loadavg_before": [round(v, 2) for v in load0],
               "loadavg_after": [round(v, 2) for v in os.getloadavg()]}
        if proc.returncode:
            raise SystemExit(f"command failed ({proc.returncode}): {text}; see {self.log}")
        self.commands.append(rec)
        return rec


def eval_metrics(path: Path) -> dict[str, float]:
    data = json.loads((path / "eval.json").read_text())
    res = next(iter(data["results"].values())) if "results" in data else next(iter(data.values()))
    m = res["metrics"] if "metrics" in res else res
    return {k: round(float(m[k]), 4) for k in METRICS}


def model_info(path: Path) -> dict[str, Any]:
    cfg = json.loads((path / "config.json").read_text())
    info = cfg.get("info", {})
    hist = info.get("history", [])
    return {"best_epoch": info.get("best_epoch"), "epochs_run": len(hist),
            "val_map@20_A_best": info.get("val_map@20_A"),
            "train_seconds": round(sum(float(h.get("seconds", 0)) for h in hist), 2),
            "train_patches_per_s_median": round(float(np.median([h["patches_per_s"] for h in hist])), 1)
            if hist else None,
            "val_map@20_A_per_epoch": [round(float(h.get("val_map@20", float("nan"))), 4) for h in hist],
            "seconds_per_epoch": [round(float(h.get("seconds", 0)), 2) for h in hist]}


def classic_on_features(archive_dir: Path, float_index: Path, bits_list: list[int], seed: int = 0
                        ) -> dict[str, dict[str, Any]]:
    """KSLSH / LSH fitted on the classifier's (L2-normalised) features, evaluated under RSiM, in process."""
    arch = open_archive(archive_dir)
    s = IndexDir.open(float_index)
    ids = np.array(arch.ids, dtype=object)
    split = split_queries(arch, "rsim")
    train_pos = arch.split_positions("train")
    out: dict[str, dict[str, Any]] = {}
    feats_train = np.asarray(s.index.get(ids[train_pos]), dtype=np.float64)
    q = np.asarray(s.index.get(ids[split.query_pos]), dtype=np.float64)
    db = np.asarray(s.index.get(ids[split.db_pos]), dtype=np.float64)
    for method in ("kslsh", "lsh"):
        for bits in bits_list:
            t0 = time.perf_counter()
            hasher = hasher_class(method)(bits, seed=seed)
            pos = train_pos
            if method == "kslsh" and len(pos) > 2000:  # the sample size rsir index uses for KSLSH
                pick = np.sort(np.random.default_rng(seed).choice(len(pos), 2000, replace=False))
            else:
                pick = np.arange(len(pos))
            hasher.fit(feats_train[pick], arch.labels[pos[pick]] if hasher.supervised else None)
            res = evaluate_full(hasher.encode(q), hasher.encode(db), "hamming", arch.labels[split.query_pos],
                                arch.labels[split.db_pos], (20,), None, bits=bits)
            out[f"{method}-{bits} (classifier features)"] = {
                "method": method, "bits": bits, "features": "classifier (float index, L2-normalised)",
                **{k: round(float(res.metrics[k]), 4) for k in METRICS},
                "fit_eval_seconds": round(time.perf_counter() - t0, 2)}
    return out


def reben_stage(run: Runner, cache: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The whole pipeline on the real reBEN sample (24 S2/S1 pairs), reported as it is."""
    work.mkdir(parents=True, exist_ok=True)
    archive = work / "archive"
    run("ingest", str(cache), "--format", "reben", "--out", str(archive), "--overwrite", "--quiet")
    arch = open_archive(archive)
    counts = {str(k): int(v) for k, v in arch.catalog["split"].value_counts().items()}
    out: dict[str, Any] = {"data": "REAL reBEN sample (BigEarthNet v2.0), S2 12 x 120 x 120", "items": len(arch),
                           "splits": counts, "results": {}}
    cls = work / "classifier"
    tr = run("train", str(archive), "--method", "classifier", "--epochs", str(args.reben_epochs), "--patience",
             str(args.reben_epochs), "--out", str(cls), "--seed", str(args.seed), "--workers", "0", "--quiet")
    m = work / "milan64"
    tm = run("train", str(archive), "--method", "milan", "--features", str(cls), "--bits", "64", "--sampler",
             args.sampler, "--epochs", str(args.reben_epochs), "--patience", str(args.reben_epochs), "--out", str(m),
             "--seed", str(args.seed), "--workers", "0", "--quiet")
    for name, model, rec in (("float (classifier features)", cls, tr), ("MiLAN-64", m, tm)):
        idx = work / f"index-{name.split()[0].lower()}"
        run("index", str(archive), "--model", str(model), "--out", str(idx), "--no-progress")
        ev = work / f"eval-{name.split()[0].lower()}"
        run("eval", str(archive), str(idx), "--protocol", "rsim", "--k", "20", "--out", str(ev))
        out["results"][name] = {**eval_metrics(ev), "train": model_info(model), "train_wall_s": rec.get("seconds")}
    for method in ("kslsh", "lsh"):
        idx = work / f"index-{method}64"
        run("index", str(archive), "--method", method, "--bits", "64", "--out", str(idx), "--no-progress")
        ev = work / f"eval-{method}64"
        run("eval", str(archive), str(idx), "--protocol", "rsim", "--k", "20", "--out", str(ev))
        out["results"][f"{method.upper()}-64 (hand-crafted)"] = eval_metrics(ev)
    return out


def summarise_ablation(abl: dict[str, Any], fraction: float) -> None:
    """Target = ``fraction`` x the best validation mAP any sampler reached; epochs and seconds to reach it, and
    whether a sampler collapsed (its run ends on a constant plateau: one code for all items) and from when."""
    curves = {k: a["train"]["val_map@20_A_per_epoch"] for k, a in abl["samplers"].items()}
    target = round(fraction * max(max(c) for c in curves.values()), 4)
    abl["target_val_map@20_A"] = target
    abl["target_rule"] = f"{fraction} x the best validation mAP@20 (A) reached by any sampler"
    for a in abl["samplers"].values():
        curve = a["train"]["val_map@20_A_per_epoch"]
        e = epochs_to_reach(curve, target)
        a["epochs_to_target"] = e
        a["seconds_to_target"] = round(sum(a["train"]["seconds_per_epoch"][:e]), 2) if e else None
        # collapsed: the run ends on a constant plateau at its lowest value (one code for everything; a learning
        # run never repeats its validation mAP to 4 decimals for 5 epochs)
        tail = curve[-5:]
        a["collapsed"] = len(curve) >= 5 and len(set(tail)) == 1 and tail[-1] == min(curve)
        a["collapsed_from_epoch"] = (next(i + 1 for i in range(len(curve)) if all(v == curve[-1] for v in curve[i:]))
                                     if a["collapsed"] else None)


def markdown(doc: dict[str, Any]) -> str:
    """The BENCHMARKS.md tables of a results JSON."""
    def f(v: Any) -> str:
        return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    lines = ["| method | bits | mAP@20 (A) | WAP@20 | NDCG@20 (exp) | train wall s | epochs (best) | index wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in doc["results"].items():
        tr = r.get("train") or {}
        ep = f"{tr.get('epochs_run')} ({tr.get('best_epoch')})" if tr else "-"
        wall = r.get("train_wall_s") if r.get("train_wall_s") is not None else tr.get("train_seconds")
        lines.append(f"| {name} | {r.get('bits') or 'float'} | {f(r['mAP@20(A)'])} | {f(r['WAP@20'])} | "
                     f"{f(r['NDCG@20(exp)'])} | {f(wall)} | {ep} | {f(r.get('index_wall_s') or r.get('index_build_s'))} |")
    out = "\n".join(lines)
    abl = doc.get("ablation")
    if abl:
        rows = ["| sampler | RSiM mAP@20 (A) | best val mAP@20 (A) (epoch) | epochs to "
                f"{abl['target_val_map@20_A']:.4f} | s to target | collapsed | s per epoch |",
                "|---|---|---|---|---|---|---|"]
        for k, a in abl["samplers"].items():
            t = a["train"]
            spe = float(np.median(t["seconds_per_epoch"])) if t["seconds_per_epoch"] else None
            rows.append(f"| {k} | {f(a['rsim']['mAP@20(A)'])} | {f(t['val_map@20_A_best'])} ({t['best_epoch']}) | "
                        f"{f(a.get('epochs_to_target'))} | {f(a.get('seconds_to_target'))} | "
                        f"{'from epoch ' + str(a['collapsed_from_epoch']) if a.get('collapsed') else 'no'} | "
                        f"{f(spe)} |")
        out += "\n\n" + "\n".join(rows)
    rb = doc.get("reben_sample")
    if rb:
        rows = ["| method (reBEN sample, real) | mAP@20 (A) | WAP@20 | NDCG@20 (exp) |", "|---|---|---|---|"]
        for k, r in rb["results"].items():
            rows.append(f"| {k} | {f(r['mAP@20(A)'])} | {f(r['WAP@20'])} | {f(r['NDCG@20(exp)'])} |")
        out += "\n\n" + "\n".join(rows)
    return out


def positive_pair_fraction(arch: Any) -> float:
    """Share of the ordered pairs of distinct training items that share at least one label (relevant pairs)."""
    lab = np.asarray(arch.labels[arch.split_positions("train")], dtype=np.float32)
    n = len(lab)
    shared = int(((lab @ lab.T) > 0).sum()) - int((lab.sum(1) > 0).sum())  # minus each item with itself
    return round(shared / max(n * (n - 1), 1), 4)


def plot_ablation(doc: dict[str, Any], work: Path, out_json: Path) -> None:
    """<out>_ablation.png: loss and validation mAP per epoch of each sampler's MiLAN-64 run (from its model)."""
    png = out_json.with_name(out_json.stem + "_ablation.png")
    infos = {k: json.loads((work / f"ablation-milan64-{k}" / "config.json").read_text())["info"]
             for k in doc["ablation"]["samplers"]}
    curves = {k: info["history"] for k, info in infos.items()}
    for k, info in infos.items():  # distinct codes over the training items of the kept (best-epoch) model
        doc["ablation"]["samplers"][k]["distinct_codes_train_kept_model"] = info.get("distinct_codes_train")
    plot_training(curves, png, f"MiLAN 64 bit: triplet samplers ({doc['archive']['difficulty']} simulated archive)")
    doc["ablation"]["plot"] = str(png.relative_to(ROOT)) if png.is_relative_to(ROOT) else str(png)


def epochs_to_reach(curve: list[float], target: float) -> int | None:
    for i, v in enumerate(curve):
        if v >= target:
            return i + 1
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archive", default="/work/bench-data/milan/sim-hard-6k")
    ap.add_argument("--n", type=int, default=6000, help="simulated items, if the archive is not there yet")
    ap.add_argument("--work", default="/work/bench-data/milan/run")
    ap.add_argument("--bits", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--cls-epochs", type=int, default=15)
    ap.add_argument("--cls-patience", type=int, default=100)
    ap.add_argument("--cls-width", type=int, default=16)
    ap.add_argument("--cls-schedule", default="cosine", choices=["constant", "cosine"])
    ap.add_argument("--milan-epochs", type=int, default=100)
    ap.add_argument("--milan-patience", type=int, default=15)
    ap.add_argument("--ablation-epochs", type=int, default=60)
    ap.add_argument("--target-fraction", type=float, default=0.98,
                    help="ablation target mAP = this fraction of the best validation mAP any sampler reached")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-ablation", action="store_true")
    ap.add_argument("--ablation-only", action="store_true",
                    help="only the classifier (float row) and the sampler ablation")
    ap.add_argument("--difficulty", default="hard", choices=["easy", "medium", "hard"],
                    help="simulator difficulty, if the archive is not there yet (and recorded in the JSON)")
    ap.add_argument("--extra-seeds", type=int, nargs="*", default=[1, 2],
                    help="also train MiLAN-64 heads with these seeds (run-to-run spread)")
    ap.add_argument("--features-bits", type=int, nargs="*", default=[64],
                    help="code lengths of KSLSH/LSH on the classifier's features (KSLSH fits take minutes)")
    ap.add_argument("--note", action="append", default=[], help="a line stored in the JSON (e.g. provenance)")
    ap.add_argument("--reuse-classic", action="store_true",
                    help="keep KSLSH/LSH index directories already under --work (they do not depend on the "
                         "classifier); their build time is then read from their manifest")
    ap.add_argument("--sampler", default="random", help="triplet sampler of the main MiLAN rows")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per command (OMP_NUM_THREADS); 1 is fastest while other sessions load "
                         "the 2 cores")
    ap.add_argument("--reben", default=None, metavar="CACHE_DIR",
                    help="also run the end-to-end pipeline on the real reBEN sample (rsir data get reben-sample)")
    ap.add_argument("--reben-epochs", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "milan.json"))
    ap.add_argument("--markdown", action="store_true", help="print the tables of an existing --out JSON")
    ap.add_argument("--summarise-only", action="store_true",
                    help="recompute the ablation summary of an existing --out JSON (no training)")
    args = ap.parse_args()
    if args.summarise_only or args.markdown:
        doc = json.loads(Path(args.out).read_text())
        if args.summarise_only and "ablation" in doc:
            doc["archive"]["positive_pair_fraction_train"] = positive_pair_fraction(open_archive(doc["archive"]["path"]))
            summarise_ablation(doc["ablation"], args.target_fraction)
            plot_ablation(doc, Path(args.work), Path(args.out))
            Path(args.out).write_text(json.dumps(doc, indent=2))
        print(markdown(doc))
        return

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    archive, work = Path(args.archive), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    run = Runner(work / "commands.log")
    res: dict[str, Any] = {"what": "MiLAN vs float features vs KSLSH/LSH, RSiM protocol (validation queries vs "
                                   "test archive), relevance = any shared label; SIMULATED data",
                           "machine": {**machine(), "torch_threads_per_command": args.threads}, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "loadavg_start": [round(v, 2) for v in os.getloadavg()], "notes": args.note}
    t_all = time.perf_counter()
    if not (archive / "manifest.json").exists():
        run("simulate", "--n", str(args.n), "--out", str(archive), "--difficulty", args.difficulty, "--seed", "0",
            "--bitemporal", "0", "--workers", "2", "--quiet")
    arch = open_archive(archive)
    counts = arch.catalog["split"].value_counts().to_dict()
    res["archive"] = {"path": str(archive), "simulated": True, "difficulty": args.difficulty, "seed": 0, "items": len(arch),
                      "splits": {str(k): int(v) for k, v in counts.items()}, "patch": "S2 12 x 120 x 120",
                      "queries": int(counts.get("validation", 0)), "database": int(counts.get("test", 0)),
                      "positive_pair_fraction_train": positive_pair_fraction(arch)}
    rows: dict[str, dict[str, Any]] = {}

    def evaluate(name: str, index: Path, extra: dict[str, Any]) -> None:
        ev = work / ("eval-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"))
        rec = run("eval", str(archive), str(index), "--protocol", "rsim", "--k", "20", "--out", str(ev))
        rows[name] = {**extra, **eval_metrics(ev), "eval_seconds": rec.get("seconds")}

    # 1. classifier = float features
    cls = work / "classifier"
    tr = run("train", str(archive), "--method", "classifier", "--epochs", str(args.cls_epochs), "--patience",
             str(args.cls_patience), "--width", str(args.cls_width), "--schedule", args.cls_schedule,
             "--out", str(cls), "--preload", "yes", "--workers", "0", "--seed",
             str(args.seed), "--quiet", skip_if=cls / "config.json")
    cls_info = model_info(cls)
    idx = work / "index-float"
    ix = run("index", str(archive), "--model", str(cls), "--out", str(idx), "--no-progress")
    evaluate("float (classifier features)", idx, {"method": "classifier features, cosine", "bits": None,
                                                   "train": cls_info, "train_wall_s": tr.get("seconds"),
                                                   "index_wall_s": ix.get("seconds")})

    # 2. MiLAN at each code length
    milan_models: dict[int, Path] = {}
    for bits in ([] if args.ablation_only else args.bits):
        m = work / f"milan{bits}-{args.sampler}"
        tr = run("train", str(archive), "--method", "milan", "--features", str(cls), "--bits", str(bits),
                 "--sampler", args.sampler, "--epochs", str(args.milan_epochs), "--patience",
                 str(args.milan_patience), "--out", str(m), "--seed", str(args.seed), "--workers", "0", "--quiet",
                 skip_if=m / "config.json")
        milan_models[bits] = m
        idx = work / f"index-milan{bits}"
        ix = run("index", str(archive), "--model", str(m), "--out", str(idx), "--no-progress")
        evaluate(f"MiLAN-{bits}", idx, {"method": f"milan (frozen classifier features, {args.sampler} sampling)",
                                        "bits": bits, "train": model_info(m), "train_wall_s": tr.get("seconds"),
                                        "index_wall_s": ix.get("seconds")})

    # 2b. the spread over seeds of the hash head (the classifier stays the seed-0 one)
    for seed in ([] if args.ablation_only else args.extra_seeds):
        m = work / f"milan64-{args.sampler}-seed{seed}"
        tr = run("train", str(archive), "--method", "milan", "--features", str(cls), "--bits", "64",
                 "--sampler", args.sampler, "--epochs", str(args.milan_epochs), "--patience",
                 str(args.milan_patience), "--out", str(m), "--seed", str(seed), "--workers", "0", "--quiet",
                 skip_if=m / "config.json")
        idx = work / f"index-milan64-seed{seed}"
        ix = run("index", str(archive), "--model", str(m), "--out", str(idx), "--no-progress")
        evaluate(f"MiLAN-64 seed {seed}", idx, {"method": f"milan, hash head seed {seed}", "bits": 64,
                                                "train": model_info(m), "train_wall_s": tr.get("seconds"),
                                                "index_wall_s": ix.get("seconds")})

    # 3. classic baselines on hand-crafted features
    for method in ([] if args.ablation_only else ["kslsh", "lsh"]):
        for bits in args.bits:
            idx = work / f"index-{method}{bits}"
            ix = run("index", str(archive), "--method", method, "--bits", str(bits), "--out", str(idx),
                     "--no-progress", skip_if=idx / "manifest.json" if args.reuse_classic else None)
            evaluate(f"{method.upper()}-{bits}", idx, {"method": f"{method} on hand-crafted features",
                                                       "bits": bits, "index_wall_s": ix.get("seconds"),
                                                       "index_build_s": json.loads((idx / "manifest.json")
                                                                                   .read_text())["build_seconds"]})
    # 4. classic hashers on the classifier's features (in process)
    if args.features_bits and not args.ablation_only:
        rows.update(classic_on_features(archive, work / "index-float", args.features_bits, args.seed))
    res["results"] = rows

    # 5. sampling ablation at 64 bits, no early stopping
    if not args.skip_ablation:
        abl: dict[str, Any] = {}
        for sampler in SAMPLERS:
            m = work / f"ablation-milan64-{sampler}"
            tr = run("train", str(archive), "--method", "milan", "--features", str(cls), "--bits", "64",
                     "--sampler", sampler, "--epochs", str(args.ablation_epochs), "--patience",
                     str(args.ablation_epochs + 1), "--out", str(m), "--seed", str(args.seed), "--workers", "0",
                     "--quiet", skip_if=m / "config.json")
            idx = work / f"index-ablation-{sampler}"
            run("index", str(archive), "--model", str(m), "--out", str(idx), "--no-progress")
            ev = work / f"eval-ablation-{sampler}"
            run("eval", str(archive), str(idx), "--protocol", "rsim", "--k", "20", "--out", str(ev))
            abl[sampler] = {"train": model_info(m), "train_wall_s": tr.get("seconds"),
                            "rsim": eval_metrics(ev)}
        res["ablation"] = {"bits": 64, "epochs": args.ablation_epochs, "early_stopping": False,
                           "validation": "validation queries vs train+validation, query left out (per epoch)",
                           "samplers": abl}
        summarise_ablation(res["ablation"], args.target_fraction)
        plot_ablation(res, work, Path(args.out))
    if args.reben:
        res["reben_sample"] = reben_stage(run, Path(args.reben), work / "reben", args)
    res["commands"] = run.commands
    res["total_wall_s"] = round(time.perf_counter() - t_all, 1)
    res["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps({k: {m: v.get(m) for m in METRICS} for k, v in rows.items()}, indent=2))


if __name__ == "__main__":
    main()
