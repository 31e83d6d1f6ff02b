"""What rsir's layer over faiss costs per query: raw faiss IndexBinaryFlat against rsir's HammingIndex (flat),
timed side by side in one run, query by query (each query runs on every path, the order rotating, so load swings
hit both alike), with 1 and 2 OpenMP threads, on the machine as it is and with ``--busy`` spinning processes
added to load it.

Reported per configuration: median single-query ms of each path, the median of the per-query differences
(rsir - raw, in microseconds) and the overhead as that difference over the raw median; and where rsir's time goes
(the faiss call made inside rsir against the whole rsir search), timed the same way.

    .venv/bin/python bench/overhead_bench.py --n 1000000 --queries 400 --busy 0 2 \\
        --out bench/results/overhead.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from search_bench import COMPONENTS, D, codes_for, machine, mixture  # noqa: E402

from rsir.hashing.itq import ITQ  # noqa: E402
from rsir.index import HammingIndex  # noqa: E402


def _spin(stop: mp.synchronize.Event) -> None:  # type: ignore[name-defined]
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def paired(fns: dict[str, object], queries: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Seconds per query of each function, run in turn on every query; the order rotates from query to query
    (every function takes every place in the turn equally often: what a function leaves in the caches, or a
    burst of load, falls on all alike)."""
    names = list(fns)
    out = {n: np.empty(len(queries)) for n in names}
    for i in range(len(queries)):
        q = queries[i:i + 1]
        shift = i % len(names)
        for n in names[shift:] + names[:shift]:
            t = time.perf_counter()
            fns[n](q, k)  # type: ignore[operator]
            out[n][i] = time.perf_counter() - t
    return out


def run(n: int, nq: int, k: int, busy: int, seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)  # the data of bench/search_bench.py
    centres = (2.0 * rng.standard_normal((COMPONENTS, D))).astype(np.float32)
    itq = ITQ(64, seed=0).fit(mixture(50_000, 1, centres))
    queries = itq.encode(mixture(nq, 2, centres))
    codes = codes_for(n, itq, centres, seed=3)
    raw = faiss.IndexBinaryFlat(64)
    raw.add(codes)
    ours = HammingIndex(64)
    ours.add(np.array([f"p{i:08d}" for i in range(n)], dtype=object), codes)

    stop = mp.Event()
    procs = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(busy)]
    for p in procs:
        p.start()
    rows = []
    try:
        time.sleep(1.0 if busy else 0.0)
        for threads in (1, 2):
            faiss.omp_set_num_threads(threads)
            paired({"raw": raw.search, "rsir": ours.search}, queries[:20], k)  # warm-up
            t = paired({"raw faiss": raw.search, "rsir flat": ours.search,
                        "faiss call inside rsir": ours._flat.search}, queries, k)
            diff = t["rsir flat"] - t["raw faiss"]
            med_raw = float(np.median(t["raw faiss"]))
            rows.append({
                "busy_processes": busy, "threads": threads, "n": n, "k": k, "queries": nq,
                "load_average": os.getloadavg()[0],
                "raw_faiss_ms": round(med_raw * 1e3, 4),
                "raw_faiss_p25_ms": round(float(np.percentile(t["raw faiss"], 25)) * 1e3, 4),
                "rsir_flat_p25_ms": round(float(np.percentile(t["rsir flat"], 25)) * 1e3, 4),
                "rsir_flat_ms": round(float(np.median(t["rsir flat"])) * 1e3, 4),
                "faiss_call_inside_rsir_ms": round(float(np.median(t["faiss call inside rsir"])) * 1e3, 4),
                "paired_difference_us": round(float(np.median(diff)) * 1e6, 1),
                "overhead_pct": round(100 * float(np.median(diff)) / med_raw, 2),
            })
            print(json.dumps(rows[-1]), flush=True)
    finally:
        stop.set()
        for p in procs:
            p.join(5)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return rows


def markdown(rows: list[dict[str, object]]) -> str:
    head = ("| busy procs | load avg | threads | raw faiss ms (median / p25) | rsir flat ms (median / p25) | "
            "faiss call in rsir ms | rsir - raw (median per query, us) | overhead |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['busy_processes']} | {r['load_average']:.1f} | {r['threads']} | {r['raw_faiss_ms']} / "
                     f"{r['raw_faiss_p25_ms']} | {r['rsir_flat_ms']} / {r['rsir_flat_p25_ms']} | "
                     f"{r['faiss_call_inside_rsir_ms']} | {r['paired_difference_us']} | {r['overhead_pct']}% |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--busy", type=int, nargs="+", default=[0, 2],
                    help="extra spinning processes per configuration (0 = the machine as it is)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "overhead.json"))
    args = ap.parse_args()
    rows = []
    for b in args.busy:
        rows += run(args.n, args.queries, args.k, b)
    res = {"what": "rsir HammingIndex (flat) against raw faiss IndexBinaryFlat, single queries, paired",
           "codes": "ITQ 64-bit codes of a 19-component Gaussian mixture (bench/search_bench.py)",
           "machine": machine(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
