"""Search benchmark: rsir Hamming indexes (flat, IVF, MIH) vs raw faiss IndexBinaryFlat vs float IndexFlatIP.

Data: feature vectors from a 19-component Gaussian mixture in 128 dims (component means ~ N(0, 4 I), per-item
noise N(0, I), plus 5% of items drawn from a broad N(0, 9 I) background), encoded with rsir's ITQ fitted on
50k of them: codes that look learned (clustered, balanced bits), not uniform random bits. Float baselines:
the same 128-d features, and 512-d features (the mixture pushed through a fixed random 128 -> 512 linear map).

Usage: .venv/bin/python bench/search_bench.py [--sizes 1000000 10000000] [--out bench/results/search.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rsir.hashing.itq import ITQ  # noqa: E402
from rsir.index import FloatIndex, HammingIndex  # noqa: E402

D = 128
COMPONENTS = 19


def mixture(n: int, seed: int, centres: np.ndarray) -> np.ndarray:
    """n feature vectors of the mixture (float32)."""
    rng = np.random.default_rng(seed)
    comp = rng.integers(0, COMPONENTS, n)
    x = centres[comp] + rng.standard_normal((n, D), dtype=np.float32)
    bg = rng.random(n) < 0.05
    x[bg] = 3.0 * rng.standard_normal((int(bg.sum()), D), dtype=np.float32)
    return x


def codes_for(n: int, itq: ITQ, centres: np.ndarray, seed: int, chunk: int = 500_000) -> np.ndarray:
    out = np.empty((n, (itq.bits + 7) // 8), dtype=np.uint8)
    for i, s in enumerate(range(0, n, chunk)):
        out[s:s + chunk] = itq.encode(mixture(min(chunk, n - s), seed * 1000 + i, centres))
    return out


def median_ms(fn, queries: np.ndarray) -> float:
    times = []
    for q in queries:
        t = time.perf_counter()
        fn(q[None, :])
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def qps(fn, batch: np.ndarray) -> float:
    t = time.perf_counter()
    fn(batch)
    return float(batch.shape[0] / (time.perf_counter() - t))


def recall_at(exact_d: np.ndarray, exact_i: np.ndarray, got_d: np.ndarray, got_i: np.ndarray) -> dict[str, float]:
    """id recall (|got ∩ exact| / k) and tie-aware recall (got items with distance <= exact k-th distance)."""
    k = exact_i.shape[1]
    ids = np.mean([len(set(a) & set(b)) / k for a, b in zip(exact_i, got_i, strict=True)])
    tie = np.mean((got_d <= exact_d[:, -1:]).sum(1) / k)
    return {"id_recall": round(float(ids), 4), "tie_aware_recall": round(float(tie), 4)}


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def machine() -> dict[str, object]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = [ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")][0]
        ram_gb = round(int(mem.split()[1]) / 1e6, 1)
    except OSError:
        ram_gb = -1.0
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gb": ram_gb, "python": platform.python_version(),
            "faiss": faiss.__version__, "numpy": np.__version__}


def bench_binary(n: int, bits: int, codes: np.ndarray, queries: np.ndarray, nq_single: int) -> dict:
    res: dict = {"n": n, "bits": bits, "bytes_per_item": bits // 8}
    single, batch = queries[:nq_single], queries[:1000]
    # raw faiss
    t = time.perf_counter()
    raw = faiss.IndexBinaryFlat(bits)
    raw.add(codes)
    res["faiss_flat_build_s"] = round(time.perf_counter() - t, 3)
    # rsir flat (int ids = positions)
    t = time.perf_counter()
    flat = HammingIndex(bits)
    flat.add(np.arange(n, dtype=np.int64), codes)
    res["rsir_flat_build_s"] = round(time.perf_counter() - t, 3)
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        res[f"faiss_flat_single_ms_{threads}t"] = round(median_ms(lambda q: raw.search(q, 10), single), 4)
        res[f"rsir_flat_single_ms_{threads}t"] = round(median_ms(lambda q: flat.search(q, 10), single), 4)
        res[f"faiss_flat_batch1000_qps_{threads}t"] = round(qps(lambda b: raw.search(b, 10), batch), 1)
        res[f"rsir_flat_batch1000_qps_{threads}t"] = round(qps(lambda b: flat.search(b, 10), batch), 1)
    res["rsir_overhead_single_2t"] = round(res["rsir_flat_single_ms_2t"] / res["faiss_flat_single_ms_2t"] - 1, 4)
    exact_d, exact_i = flat.search(single, 10)
    raw = None  # free memory before the next index
    # IVF
    nlist = 1024 if n <= 2_000_000 else 4096
    t = time.perf_counter()
    ivf = HammingIndex(bits, kind="ivf", nlist=nlist, train_size=min(n, 50 * nlist))
    ivf.add(np.arange(n, dtype=np.int64), codes)
    res["ivf"] = {"nlist": nlist, "build_s": round(time.perf_counter() - t, 2), "by_nprobe": {}}
    for nprobe in (1, 8, 32, 128):
        ivf.nprobe = nprobe
        d, i = ivf.search(single, 10)
        res["ivf"]["by_nprobe"][nprobe] = {"single_ms_2t": round(median_ms(lambda q: ivf.search(q, 10), single), 4),
                                           **recall_at(exact_d, exact_i, d, i)}
    ivf = None
    gc.collect()
    # MIH
    t = time.perf_counter()
    mih = HammingIndex(bits, kind="mih")
    mih.add(np.arange(n, dtype=np.int64), codes)
    mih._mih_tables()
    res["mih"] = {"m": mih._mih_tables().m, "build_s": round(time.perf_counter() - t, 2)}
    d, i = mih.search(single, 10)
    res["mih"].update(recall_at(exact_d, exact_i, d, i))
    res["mih"]["knn10_single_ms"] = round(median_ms(lambda q: mih.search(q, 10), single), 4)
    for r in (2, 6):
        res["mih"][f"range_r{r}_single_ms"] = round(median_ms(lambda q, r=r: mih.range_search(q, r), single), 4)
        res["mih"][f"flat_range_r{r}_single_ms"] = round(median_ms(lambda q, r=r: flat.range_search(q, r),
                                                                   single), 4)
    mih = flat = None
    gc.collect()
    res["peak_rss_gb"] = round(rss_gb(), 2)
    return res


def bench_float(n: int, dim: int, x: np.ndarray, queries: np.ndarray, nq_single: int) -> dict:
    res: dict = {"n": n, "dim": dim, "bytes_per_item": dim * 4}
    t = time.perf_counter()
    index = FloatIndex(dim, "ip")
    index.add(np.arange(n, dtype=np.int64), x)
    res["build_s"] = round(time.perf_counter() - t, 3)
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        res[f"single_ms_{threads}t"] = round(median_ms(lambda q: index.search(q, 10), queries[:nq_single]), 3)
    res["batch1000_qps_2t"] = round(qps(lambda b: index.search(b, 10), queries[:1000]), 1)
    res["peak_rss_gb"] = round(rss_gb(), 2)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--bits", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "search.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    centres = (2.0 * rng.standard_normal((COMPONENTS, D))).astype(np.float32)
    train = mixture(50_000, 1, centres)
    qfeat = mixture(1000, 2, centres)
    report: dict = {"machine": machine(), "data": __doc__.split("Usage")[0].strip(), "binary": [], "float": [],
                    "notes": []}
    t0 = time.perf_counter()
    for bits in args.bits:
        itq = ITQ(bits, seed=0).fit(train)
        queries = itq.encode(qfeat)
        for n in args.sizes:
            codes = codes_for(n, itq, centres, seed=3)
            r = bench_binary(n, bits, codes, queries, args.queries)
            print(json.dumps(r), flush=True)
            report["binary"].append(r)
            del codes
            gc.collect()
    # float baselines at 1M only: 10M x 512 float32 = 20.5 GB does not fit the 8 GB budget
    nf = min(args.sizes)
    report["notes"].append(f"float baselines measured at n={nf} only: 10M x 512 x 4 B = 20.5 GB exceeds the 8 GB "
                           "memory budget of this benchmark")
    xf = np.concatenate([mixture(min(500_000, nf - s), 7 + s, centres) for s in range(0, nf, 500_000)])
    proj = (np.random.default_rng(5).standard_normal((D, 512)) / np.sqrt(D)).astype(np.float32)
    for dim in (128, 512):
        x = xf if dim == 128 else np.ascontiguousarray(xf @ proj)
        q = qfeat if dim == 128 else np.ascontiguousarray(qfeat @ proj)
        r = bench_float(nf, dim, x, q, min(args.queries, 50))
        print(json.dumps(r), flush=True)
        report["float"].append(r)
        del x
        gc.collect()
    b = next((r for r in report["binary"] if r["n"] == nf and r["bits"] == 64), None)
    f512 = next((r for r in report["float"] if r["dim"] == 512), None)
    if b and f512:
        report["summary"] = {
            "speedup_binary64_vs_float512_single_2t": round(f512["single_ms_2t"] / b["rsir_flat_single_ms_2t"], 1),
            "size_ratio_float512_vs_binary64": f512["bytes_per_item"] / b["bytes_per_item"],
        }
    report["total_s"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out)
    print(markdown(report))


def markdown(rep: dict) -> str:
    lines = ["| n | bits | faiss flat 1t ms | rsir flat 1t ms | rsir flat 2t ms | overhead | batch qps 2t | "
             "MIH knn ms | MIH recall | IVF nprobe=8 ms / recall |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rep["binary"]:
        iv = r["ivf"]["by_nprobe"][8]
        lines.append(f"| {r['n']:,} | {r['bits']} | {r['faiss_flat_single_ms_1t']} | {r['rsir_flat_single_ms_1t']} | "
                     f"{r['rsir_flat_single_ms_2t']} | {r['rsir_overhead_single_2t']:+.1%} | "
                     f"{r['rsir_flat_batch1000_qps_2t']} | {r['mih']['knn10_single_ms']} | "
                     f"{r['mih']['tie_aware_recall']} | {iv['single_ms_2t']} / {iv['tie_aware_recall']} |")
    lines += ["", "| float n | dim | single 1t ms | single 2t ms | batch qps 2t | bytes/item |", "|---|---|---|---|---|---|"]
    for r in rep["float"]:
        lines.append(f"| {r['n']:,} | {r['dim']} | {r['single_ms_1t']} | {r['single_ms_2t']} | "
                     f"{r['batch1000_qps_2t']} | {r['bytes_per_item']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
