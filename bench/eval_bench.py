"""Retrieval-core benchmark (issue 3): `rsir eval --protocol rsim` of LSH, ITQ, KLSH, KSLSH and the float features.

On a simulated archive (default: 20,000 hard pairs, seed 0, under /work/bench-data/eval/), for every method x code
length the index is built with the functions `rsir index` calls (``FeatureHashEncoder.fit`` then
``build_index(encoder=...)``, so fit and encode can be timed apart) and evaluated by running the CLI itself,
``rsir eval ARCHIVE INDEX --protocol rsim --k 20 --out DIR``, whose eval.json is read back: every metric here is
the number `rsir eval` prints (the script checks the printed mAP@20(A) against the JSON). With --verify-cli one
configuration is also indexed by the `rsir index` CLI and its codes compared with the in-process index.

Protocol rsim: validation split = queries, test split = archive; relevance = at least one shared label.
Reported: mAP@20 variant A, WAP@20, NDCG@20 with gain 2^C - 1 (and the linear gain C in the JSON), RSiM P/R/F1@20.
Timings (2 shared cores; os.getloadavg() recorded before and after each step):
  fit_s       FeatureHashEncoder.fit: read the training sample, hand-crafted features, fit the hasher
  hasher_fit_s   the hasher's own fit on the standardised features (part of fit_s)
  encode_s    build_index with the fitted encoder: read every archive item, features, hash, index, write
  hasher_encode_s  the hasher's own encode of every item's features (part of encode_s)
Training samples come from rsir.hashing.encoder.default_fit_sample (kernel methods subsample, as their papers do).
Data: simulated (no real data is read).

usage: .venv/bin/python bench/eval_bench.py [--n 20000] [--archive DIR] [--bits 32,64,128]
       [--methods lsh,itq,klsh,kslsh,float] [--work /work/bench-data/eval] [--verify-cli kslsh:64]
"""

from __future__ import annotations

import os

# One BLAS thread (unless set): on the shared 2-core machine, OpenBLAS's 2 threads ran KSLSH's 2000 x 2000
# matrix-vector products 4x slower than one thread (12 ms against 2.8 ms). Inherited by the rsir subprocesses.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager, nullcontext  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from rsir.data.archive import open_archive  # noqa: E402
from rsir.eval.report import _figure, _save, write_json  # noqa: E402
from rsir.hashing import HasherError, hasher_class  # noqa: E402
from rsir.hashing.encoder import FeatureHashEncoder, classic_methods, default_fit_sample  # noqa: E402
from rsir.index import open_index  # noqa: E402
from rsir.pipeline import build_index  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RSIR = str(ROOT / ".venv" / "bin" / "rsir")
K = 20
TABLE = [("mAP@20 A", "mAP@20(A)"), ("WAP@20", "WAP@20"), ("NDCG@20 (2^C-1)", "NDCG@20(exp)"),
         ("P@20 (RSiM)", "rsim_P@20"), ("R@20 (RSiM)", "rsim_R@20"), ("F1@20 (RSiM)", "rsim_F1@20")]
KEEP = ["mAP@20(A)", "mAP@20(B)", "mAP@20(C)", "mAP@20(C,tie-aware)", "P@20", "P@20(tie-aware)", "R@20",
        "WAP@20", "ACG@20", "NDCG@20(exp)", "NDCG@20(lin)", "rsim_P@20", "rsim_R@20", "rsim_F1@20"]


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import torch

        threads: int | None = torch.get_num_threads()
    except ImportError:
        threads = None
    return {"cpu": cpu, "nproc": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "torch_threads": threads, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


@contextmanager
def timed_method(cls: type, name: str, acc: dict[str, float]) -> Iterator[None]:
    """Accumulate the wall time of ``cls.<name>`` calls into acc[name] (behaviour unchanged, restored after)."""
    orig = cls.__dict__.get(name)
    inner: Callable[..., Any] = getattr(cls, name)

    def wrapper(self: Any, *a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return inner(self, *a, **kw)
        finally:
            acc[name] = acc.get(name, 0.0) + time.perf_counter() - t

    setattr(cls, name, wrapper)
    try:
        yield
    finally:
        if orig is None:
            delattr(cls, name)
        else:
            setattr(cls, name, orig)


def run_cli(args: list[str]) -> tuple[str, float]:
    t = time.perf_counter()
    p = subprocess.run([RSIR, *args], capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"rsir {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p.stdout, time.perf_counter() - t


def simulate(n: int, out: Path, workers: int) -> dict[str, Any]:
    args = ["simulate", "--n", str(n), "--out", str(out), "--difficulty", "hard", "--seed", "0",
            "--workers", str(workers), "--overwrite", "--quiet"]
    before = load()
    _, secs = run_cli(args)
    return {"command": "rsir " + " ".join(args), "seconds": round(secs, 1), "load_before": before,
            "load_after": load()}


def build(archive: Any, method: str, bits: int, out: Path) -> dict[str, Any]:
    """What `rsir index` does (fit, then build_index with the encoder), timed apart."""
    acc: dict[str, float] = {}
    mod = archive.primary_modality
    row: dict[str, Any] = {"load_before": load()}
    cls = hasher_class(method) if method != "float" else None
    with (timed_method(cls, "fit", acc) if cls else nullcontext()), \
         (timed_method(cls, "encode", acc) if cls else nullcontext()):
        t = time.perf_counter()
        enc = FeatureHashEncoder.fit(archive, method, bits, mod, seed=0)
        row["fit_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        build_index(archive, out, method=method, bits=bits, modality=mod, seed=0, encoder=enc, progress=False)
        row["encode_s"] = round(time.perf_counter() - t, 3)
    row["hasher_fit_s"] = round(acc.get("fit", 0.0), 3)
    row["hasher_encode_s"] = round(acc.get("encode", 0.0), 3)
    train = int(archive.split_positions("train").size)
    row["fit_items"] = min(train, default_fit_sample(method))
    if enc.hasher is not None:
        params = enc.hasher._params()
        row["hasher_params"] = params
        if method == "kslsh":
            row["fit_items_note"] = (f"{params['anchors']} anchors from {row['fit_items']} training items, "
                                     f"all {row['fit_items']} labelled (S is l x l)")
        elif method == "klsh":
            row["fit_items_note"] = (f"{params['anchors']} anchors from {row['fit_items']} training items "
                                     f"(sigma from all of them), t = {params['t']} anchors per bit")
        chosen = getattr(enc.hasher, "chosen", None)
        if chosen:
            row["kslsh_bits_optimised"] = int(sum(c == "optimised" for c in chosen))
    row["feature_dim"] = int(enc.extractor.dim)
    row["load_after"] = load()
    return row


def evaluate(archive_dir: Path, index_dir: Path, out: Path) -> dict[str, Any]:
    args = ["eval", str(archive_dir), str(index_dir), "--protocol", "rsim", "--k", str(K), "--out", str(out)]
    before = load()
    stdout, secs = run_cli(args)
    doc = json.loads((out / "eval.json").read_text())
    (res,) = doc["results"].values()
    printed = re.search(r"^mAP@20\(A\)\s+([0-9.]+)\s*$", stdout, re.M)
    if printed is None or abs(float(printed.group(1)) - res["metrics"]["mAP@20(A)"]) > 5e-5:
        sys.exit(f"printed mAP@20(A) {printed and printed.group(1)} differs from eval.json "
                 f"{res['metrics']['mAP@20(A)']}")
    return {"metrics": {k: res["metrics"][k] for k in KEEP if k in res["metrics"]}, "n_queries": res["n_queries"],
            "n_db": res["n_db"], "distance": res["distance"], "eval_s": round(secs, 2),
            "eval_inner_s": doc["meta"]["seconds"], "eval_load_before": before, "eval_load_after": load(),
            "eval_stdout": stdout.strip().splitlines()}


def verify_cli(archive_dir: Path, method: str, bits: int, ours: Path, work: Path) -> dict[str, Any]:
    """Index one configuration with the `rsir index` CLI and compare its codes with the in-process index."""
    out = work / "verify" / f"{method}{bits}"
    args = ["index", str(archive_dir), "--method", method, "--bits", str(bits), "--out", str(out),
            "--no-progress"]
    _, secs = run_cli(args)
    a, b = open_index(ours / "index"), open_index(out / "index")
    ids = np.array(open_archive(archive_dir).ids, dtype=object)
    same = bool(np.array_equal(np.asarray(a.get(ids)), np.asarray(b.get(ids))))
    shutil.rmtree(out, ignore_errors=True)
    return {"command": "rsir " + " ".join(args), "cli_seconds": round(secs, 1), "identical_codes": same}


def archive_meta(archive: Any) -> dict[str, Any]:
    """Path, sizes of each split, modality and the simulator's settings from the archive manifest."""
    info = archive.manifest.get("info") or {}
    return {"path": str(archive.path), "items": len(archive),
            "splits": {s: int(archive.split_positions(s).size) for s in ("train", "validation", "test")},
            "modality": archive.primary_modality, "source_format": archive.manifest.get("source_format"),
            "simulated": bool(info.get("simulated")), "simulator": info.get("simulator"),
            "manifest_created": archive.manifest.get("created")}


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for method in dict.fromkeys(r["method"] for r in rows if r["method"] != "float"):
        pts = sorted((r["bits"], r["metrics"]["mAP@20(A)"]) for r in rows if r["method"] == method and "metrics" in r)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method.upper())
    for r in rows:
        if r["method"] == "float":
            ax.axhline(r["metrics"]["mAP@20(A)"], color="k", ls="--", lw=1,
                       label=f"float features ({r['bits']} d, L2)")
    ax.set_xscale("log", base=2)
    ax.set_xticks([r["bits"] for r in rows if r["method"] != "float"] or [32, 64, 128])
    ax.get_xaxis().set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("code length (bits)")
    ax.set_ylabel("mAP@20 (variant A)")
    ax.set_title("rsim protocol, simulated hard archive")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def markdown(rep: dict[str, Any]) -> str:
    head = ["method", "bits"] + [t[0] for t in TABLE] + ["fit s", "encode s", "hasher fit s", "hasher encode s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for r in rep["runs"]:
        if "not_applicable" in r:
            lines.append(f"| {r['method'].upper()} | {r['bits']} | " + " | ".join(["n/a"] * (len(head) - 2)) + " |")
            continue
        bits = f"{r['bits']} d (float)" if r["method"] == "float" else str(r["bits"])
        cells = [r["method"].upper() if r["method"] != "float" else "float", bits]
        cells += [f"{r['metrics'][key]:.4f}" for _, key in TABLE]
        cells += [f"{r['fit_s']:.1f}", f"{r['encode_s']:.1f}", f"{r['hasher_fit_s']:.2f}",
                  f"{r['hasher_encode_s']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000, help="pairs to simulate (ignored with --archive)")
    ap.add_argument("--archive", default=None, help="reuse this simulated archive instead of simulating")
    ap.add_argument("--work", default="/work/bench-data/eval", help="scratch dir for the archive, indexes, evals")
    ap.add_argument("--methods", default="lsh,itq,klsh,kslsh,float")
    ap.add_argument("--bits", default="32,64,128")
    ap.add_argument("--workers", type=int, default=2, help="simulator processes")
    ap.add_argument("--verify-cli", default="kslsh:64", help="METHOD:BITS to index also with the CLI ('' = none)")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results" / "eval.json"))
    args = ap.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rep: dict[str, Any] = {"benchmark": "retrieval core, rsir eval --protocol rsim (issue 3)",
                           "dataset": "simulated", "machine": machine(), "load_start": load(),
                           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if args.archive:
        archive_dir = Path(args.archive)
        rep["simulate"] = {"reused": str(archive_dir)}
    else:
        archive_dir = work / f"sim{args.n // 1000}k"
        rep["simulate"] = simulate(args.n, archive_dir, args.workers)
    archive = open_archive(archive_dir)
    rep["archive"] = archive_meta(archive)
    splits = rep["archive"]["splits"]
    rep["protocol"] = {"name": "rsim", "queries": f"validation ({splits['validation']})",
                       "archive": f"test ({splits['test']})", "k": K, "relevance": "at least one shared label",
                       "ndcg_gain": "2^C - 1 (NDCG@20(lin): gain C), C = number of shared labels"}
    rep["fit_sample"] = {m: default_fit_sample(m) for m in classic_methods()}
    # with --archive: the command that wrote it, if it was this script's (--n tells the size)
    rep["commands"] = [f"rsir simulate --n {args.n} --out {archive_dir} --difficulty hard --seed 0"
                       + ("" if not args.archive else "  # reused with --archive; written earlier by this command")]
    env = f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']} "
    rep["runs"] = []
    bits_list = [int(b) for b in args.bits.split(",") if b]
    todo = [(m, b) for m in args.methods.split(",") if m != "float" for b in bits_list]
    if "float" in args.methods.split(","):
        todo.append(("float", 0))
    for method, bits in todo:
        name = f"{method}{bits}" if method != "float" else "float"
        index_dir, eval_dir = work / "indexes" / name, work / "evals" / name
        row: dict[str, Any] = {"method": method, "bits": bits}
        try:
            row.update(build(archive, method, bits or 64, index_dir))
        except HasherError as e:  # e.g. ITQ rotates the top-B PCA directions: B <= feature dimension
            row["not_applicable"] = str(e)
            rep["runs"].append(row)
            print(f"{name:8s} n/a: {e}", flush=True)
            continue
        if method == "float":
            row["bits"] = row["feature_dim"]
        row.update(evaluate(archive_dir, index_dir, eval_dir))
        bits_arg = f" --bits {bits}" if method != "float" else ""
        rep["commands"] += [f"{env}rsir index {archive_dir} --method {method}{bits_arg} --out {index_dir}",
                            f"{env}rsir eval {archive_dir} {index_dir} --protocol rsim --k {K} --out {eval_dir}"]
        rep["runs"].append(row)
        m = row["metrics"]
        print(f"{name:8s} mAP@20(A) {m['mAP@20(A)']:.4f}  WAP@20 {m['WAP@20']:.4f}  NDCG@20 {m['NDCG@20(exp)']:.4f}"
              f"  F1@20 {m['rsim_F1@20']:.4f}  fit {row['fit_s']:.1f}s (hasher {row['hasher_fit_s']:.2f}s)  "
              f"encode {row['encode_s']:.1f}s  eval {row['eval_s']:.1f}s  load {load()}", flush=True)
        write_json(args.results, rep)
    if args.verify_cli:
        method, _, bits_s = args.verify_cli.partition(":")
        name = f"{method}{bits_s}" if method != "float" else "float"
        rep["verify_cli"] = verify_cli(archive_dir, method, int(bits_s or 64), work / "indexes" / name, work)
        print("verify:", rep["verify_cli"])
    rep["load_end"] = load()
    rep["markdown"] = markdown(rep)
    write_json(args.results, rep)
    if len(rep["runs"]) > 1:
        plot(rep["runs"], Path(args.results).with_name("eval_map.png"))
    print(rep["markdown"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
