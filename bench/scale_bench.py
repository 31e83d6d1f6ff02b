"""Scaling benchmark (issue 17): index cost against n for faiss flat, faiss IVF, multi-index hashing and Milvus Lite,
and encoding throughput locally against a Dask LocalCluster of 1 and 2 workers.

Index part: n random 64-bit codes (uniform: the hardest case for multi-index hashing, whose buckets then hold
n / 2^16 codes each; learned codes cluster), ids "c<i>", built through rsir's Index protocol (``make_index``).
For each backend and n: build seconds (add, IVF training included; Milvus: insert + flush), memory (RSS growth of
this process, plus the Milvus Lite server process's RSS for milvus), single-query latency (median and p90 of 30
queries, k = 10, exact results with ties by position as rsir returns them), and one batch of 100 queries (k = 10)
in total ms. Milvus is also timed as a raw ``MilvusClient.search`` (top 10, no tie completion).

Encoding part: a simulated archive (``rsir.data.simulate``, size 24 px, seed 0), LSH 64 bits fitted once, then
``build_index`` with that encoder: locally, and with ``--dask local:1`` and ``local:2`` (cluster start-up timed
apart). Items per second exclude the fit.

Machine: 2 shared, loaded cores (the load average is recorded). Every number is measured on simulated or random
data. torch and BLAS use one thread.

usage: .venv/bin/python bench/scale_bench.py [--ns 10000,100000,1000000] [--milvus-max 100000]
       [--encode-n 1200] [--out bench/results/scale.json]
       (--ns "" runs only the encoding part)
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from rsir.index import make_index  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pids: list[int] | None = None) -> float:
    procs = [psutil.Process()] + [psutil.Process(p) for p in pids or [] if psutil.pid_exists(p)]
    return sum(p.memory_info().rss for p in procs) / 2**20


def milvus_pids() -> list[int]:
    return [c.pid for c in psutil.Process().children(recursive=True) if "milvus" in " ".join(c.cmdline()).lower()]


def bench_index(backend: str, n: int, work: Path, queries: np.ndarray, codes: np.ndarray) -> dict[str, Any]:
    ids = np.arange(n, dtype=np.int64)
    before = rss_mb()
    t0 = time.perf_counter()
    if backend == "milvus":
        index = make_index("hamming", 64, backend="milvus", uri=str(work / f"m{n}.db"))
        index.add(ids, codes[:n])
        index.client.flush(index.collection)
    else:
        index = make_index("hamming", 64, kind=backend)
        index.add(ids, codes[:n])
    build = time.perf_counter() - t0
    if backend in ("mih", "auto", "scan", "exact-ivf"):
        t1 = time.perf_counter()
        index.search(queries[:1], 10)  # mih builds its tables, auto measures and picks, on the first search
        build += time.perf_counter() - t1
    mem = rss_mb(milvus_pids() if backend == "milvus" else None) - before
    single = []
    for q in queries[:30]:
        t1 = time.perf_counter()
        index.search(q[None], 10)
        single.append((time.perf_counter() - t1) * 1000)
    t1 = time.perf_counter()
    index.search(queries[:100], 10)
    batch = (time.perf_counter() - t1) * 1000
    row = {"backend": backend, "n": n, "build_s": round(build, 3), "mem_mb": round(mem, 1),
           "single_ms_median": round(float(np.median(single)), 3), "single_ms_p90": round(float(np.percentile(single, 90)), 3),
           "batch100_ms": round(batch, 1), "load": round(os.getloadavg()[0], 1)}
    if backend == "milvus":
        raw = []
        for q in queries[:30]:
            t1 = time.perf_counter()
            index.client.search(index.collection, data=[q.tobytes()], limit=10, anns_field="code",
                                search_params={"metric_type": "HAMMING"})
            raw.append((time.perf_counter() - t1) * 1000)
        row["raw_single_ms_median"] = round(float(np.median(raw)), 3)
        index.drop()
        index.close()
    if backend == "auto" and hasattr(index, "chosen"):
        row["chosen"] = str(index.chosen)
    print(json.dumps(row), flush=True)
    return row


def bench_encode(n: int, work: Path) -> list[dict[str, Any]]:
    from rsir.data.archive import open_archive
    from rsir.data.simulate import SimConfig, simulate
    from rsir.hashing.encoder import FeatureHashEncoder
    from rsir.pipeline import build_index
    from rsir.scale import open_client
    from rsir.scale.encode import dask_encoder

    arch_path = work / "sim"
    simulate(SimConfig(n=n, seed=0, size=24), arch_path)
    arch = open_archive(arch_path)
    enc = FeatureHashEncoder.fit(arch, "lsh", 64, arch.primary_modality, seed=0, progress=False)
    rows = []
    t0 = time.perf_counter()
    build_index(arch, work / "local", encoder=enc, progress=False)
    local_s = time.perf_counter() - t0
    rows.append({"mode": "local", "items": n, "encode_s": round(local_s, 2), "items_per_s": round(n / local_s, 1),
                 "load": round(os.getloadavg()[0], 1)})
    print(json.dumps(rows[-1]), flush=True)
    ref = np.load(work / "local" / "index" / "codes.npy")
    for w in (1, 2):
        t0 = time.perf_counter()
        with open_client(f"local:{w}") as client:
            up = time.perf_counter() - t0
            t1 = time.perf_counter()
            build_index(arch, work / f"dask{w}", encoder=enc, progress=False, encode_batches=dask_encoder(client))
            s = time.perf_counter() - t1
        same = bool(np.array_equal(np.load(work / f"dask{w}" / "index" / "codes.npy"), ref))
        rows.append({"mode": f"dask local:{w}", "items": n, "cluster_start_s": round(up, 2), "encode_s": round(s, 2),
                     "items_per_s": round(n / s, 1), "codes_equal_local": same, "load": round(os.getloadavg()[0], 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for b in sorted({r["backend"] for r in rows}):
        rs = sorted((r for r in rows if r["backend"] == b), key=lambda r: r["n"])
        ns = [r["n"] for r in rs]
        axes[0].plot(ns, [r["build_s"] for r in rs], marker="o", label=b)
        axes[1].plot(ns, [r["single_ms_median"] for r in rs], marker="o", label=b)
    for ax, title in zip(axes, ("build time (s)", "single-query latency, median (ms), k=10"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("n codes (64 bit, random)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("rsir index cost against n (2 shared, loaded cores; random codes)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ns", default="10000,100000,1000000")
    ap.add_argument("--milvus-max", type=int, default=100_000)
    ap.add_argument("--backends", default="flat,ivf,mih,milvus")
    ap.add_argument("--no-encode", action="store_true", help="only the index part")
    ap.add_argument("--encode-n", type=int, default=1200)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "scale.json"))
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    work = Path(tempfile.mkdtemp(prefix="rsir-scale-"))
    ns = [int(x) for x in args.ns.split(",") if x]
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (max(ns or [1]), 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (100, 8), dtype=np.uint8)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load0 = os.getloadavg()
    rows = []
    for b in args.backends.split(","):  # compile (numba) and import outside the timings
        if b != "milvus":
            w = make_index("hamming", 64, kind=b)
            w.add(np.arange(64), codes[:64] if len(codes) >= 64 else queries[:64])
            w.search(queries[:2], 10)
    try:
        for n in ns:
            for b in args.backends.split(","):
                if b == "milvus" and n > args.milvus_max:
                    continue
                rows.append(bench_index(b, n, work, queries, codes))
        enc = [] if args.no_encode else bench_encode(args.encode_n, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    result = {"benchmark": "scale (issue 17)", "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "load_at_start": [round(x, 1) for x in load0],
                          "load_at_end": [round(x, 1) for x in os.getloadavg()], "note": "2 shared cores, loaded by other jobs"},
              "data": {"index": "uniform random 64-bit codes, seed 0", "encode": f"simulated archive, n={args.encode_n}, "
                       "size 24 px, seed 0 (rsir.data.simulate)"},
              "index": rows, "encode": enc}
    out.write_text(json.dumps(result, indent=2))
    if rows:
        plot(rows, out.with_suffix(".png"))
    print(f"wrote {out}" + (f" and {out.with_suffix('.png')}" if rows else ""))


if __name__ == "__main__":
    main()
