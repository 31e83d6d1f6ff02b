"""Issue 12: does what is learnt on the simulator transfer to real patches? Models trained on simulated archives
are evaluated on the REAL reBEN sample (24 Sentinel-2 pairs, BigEarthNet v2.0), leave-one-out over all 24 items
(every patch a query against the 23 others), beside the same methods trained on the sample itself, LSH and the
standardised hand-crafted float features.

Everything runs through the `rsir` CLI (commands stored in the JSON). A simulator-trained model normalises the
real bands with its own (simulated) training statistics, so the simulator's radiometry is part of what is
measured.

Usage: python bench/transfer_bench.py --model NAME=MODEL_DIR [--model ...] --out bench/results/transfer.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from milan_bench import Runner  # noqa: E402
from train_bench import machine  # noqa: E402

KEYS = ("mAP@10(A)", "mAP@10(C)", "mAP@10(C,tie-aware)", "P@10", "P@10(tie-aware)", "mAP@10(C)[jac>=0.5]",
        "mAP@10(C)[exact]", "NDCG@10(exp)")
SHARED = ROOT.parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", default=[], metavar="NAME=DIR",
                    help="a model trained on a simulated archive")
    ap.add_argument("--reben", default=str(SHARED / "reben-sample"))
    ap.add_argument("--work", default="/work/bench-data/issue12/transfer")
    ap.add_argument("--epochs", type=int, default=10, help="classifier epochs on the sample itself")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.out).read_text())))
        return
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    run = Runner(work / "commands.log")
    t0 = time.perf_counter()
    arch = work / "reben"
    run("ingest", args.reben, "--format", "reben", "--out", str(arch), "--overwrite", "--quiet")
    rows: dict[str, dict[str, Any]] = {}

    def evaluate(name: str, index: Path) -> None:
        ev = work / f"eval-{index.name}"
        run("eval", str(arch), str(index), "--protocol", "loo", "--split", "all", "--k", "10", "--out", str(ev))
        data = json.loads((ev / "eval.json").read_text())
        res = next(iter(data["results"].values()))
        rows[name] = {k: round(float(res["metrics"][k]), 4) for k in KEYS if k in res["metrics"]}

    for spec in args.model:
        name, _, d = spec.partition("=")
        idx = work / f"index-{name.replace(' ', '_').replace('/', '_')}"
        run("index", str(arch), "--model", d, "--out", str(idx), "--no-progress")
        evaluate(f"{name} (trained on the simulator)", idx)
    cls, mil = work / "classifier", work / "milan64"
    run("train", str(arch), "--method", "classifier", "--epochs", str(args.epochs), "--batch-size", "8", "--out",
        str(cls), "--workers", "0", "--quiet")
    run("train", str(arch), "--method", "milan", "--features", str(cls), "--bits", "64", "--epochs", "30",
        "--batch-size", "9", "--out", str(mil), "--workers", "0", "--quiet")
    for name, model in (("classifier float features (trained on the sample's 6 train items)", cls),
                        ("MiLAN 64 (trained on the sample's 6 train items)", mil)):
        idx = work / f"index-own-{model.name}"
        run("index", str(arch), "--model", str(model), "--out", str(idx), "--no-progress")
        evaluate(name, idx)
    for method, extra in (("lsh", ["--bits", "64"]), ("float", [])):
        idx = work / f"index-{method}"
        run("index", str(arch), "--method", method, *extra, "--out", str(idx), "--no-progress")
        evaluate({"lsh": "LSH 64 (hand-crafted)", "float": "hand-crafted float features (standardised)"}[method],
                 idx)
    doc = {"what": "REAL reBEN sample (24 pairs), leave-one-out over all 24 items, relevance variants as named; "
                   "k = 10 (23 items ranked per query)",
           "machine": machine(), "rows": rows, "commands": run.commands,
           "total_wall_s": round(time.perf_counter() - t0, 1)}
    Path(args.out).write_text(json.dumps(doc, indent=2))
    print(markdown(doc))


def markdown(doc: dict[str, Any]) -> str:
    cols = ["mAP@10(A)", "mAP@10(C)", "mAP@10(C,tie-aware)", "P@10", "mAP@10(C)[jac>=0.5]", "mAP@10(C)[exact]"]
    lines = ["| model (evaluated on the real reBEN sample, loo, 24 queries) | " + " | ".join(cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for name, r in doc["rows"].items():
        lines.append(f"| {name} | " + " | ".join(f"{r[c]:.4f}" if c in r else "-" for c in cols) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
