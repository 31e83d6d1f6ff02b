"""Exact Hamming search benchmark: rsir's compiled scan, multi-index hashing and exact IVF side by side with faiss
IndexBinaryFlat (exact), IndexBinaryIVF and IndexBinaryMultiHash (both approximate: their recall is reported).

Codes: ``learned`` = bench/search_bench.py's learned-like codes (a 19-component Gaussian mixture in 128 dims,
5% broad background, encoded by rsir's ITQ fitted on 50k of them: clustered, correlated bits; only ~8% of them
distinct, so the k nearest are usually exact duplicates); ``clustered`` = 1,000 centre codes with 5% of bits
flipped plus 5% uniform background (clustered, ~95% distinct); ``uniform`` = independent fair bits. Queries are fresh codes of the same kind (not stored items). Everything single-threaded
(faiss.omp_set_num_threads(1); the numba kernels are serial). For each method: build time, memory beyond the
codes, median single-query latency for k in {1, 10, 100, 1000}, batch throughput (k = 10), radius queries
(radii giving about 10^2, 10^3 and 10^4 hits), with candidates checked per query and MIH bucket occupancy,
and the ratio of the compiled scan to the memory floor (one XOR pass over the codes). Every rsir result is
compared with the compiled scan (ids and distances), and the scan's distances with faiss IndexBinaryFlat.

Usage: nice -n 10 .venv/bin/python bench/exact_search_bench.py --sizes 1000000 10000000 --bits 64 \
           --out bench/results/exact_search.json   (--codes, --queries, --skip-approx to cut the run;
       --report-only redraws the table and bench/results/exact_search.png from the JSON)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import faiss
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from search_bench import COMPONENTS, D, codes_for, machine, mixture  # noqa: E402

from rsir.hashing.itq import ITQ  # noqa: E402
from rsir.index.ivf_exact import ExactIVF  # noqa: E402
from rsir.index.kernels import as_words, flat_knn, flat_radius, xor_floor  # noqa: E402
from rsir.index.mih_compiled import MIHTables  # noqa: E402

KS = (1, 10, 100, 1000)


def timed(fn):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def median_ms(fn, nq: int) -> float:  # type: ignore[no-untyped-def]
    ts = []
    for i in range(nq):
        t = time.perf_counter()
        fn(i)
        ts.append(time.perf_counter() - t)
    return round(float(np.median(ts) * 1e3), 4)


def recall(exact_p: np.ndarray, exact_d: np.ndarray, got_p: np.ndarray, got_d: np.ndarray) -> dict[str, float]:
    k = exact_p.shape[1]
    ids = np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(exact_p, got_p, strict=True)])
    tie = np.mean((got_d <= exact_d[:, -1:]).sum(1) / k)
    return {"id_recall": round(float(ids), 4), "tie_aware_recall": round(float(tie), 4)}


def clustered_codes(n: int, bits: int, seed: int, centres: int = 1000, flip: float = 0.05,
                    chunk: int = 1_000_000) -> np.ndarray:
    """Codes around 1,000 random centre codes (the same centres for every seed), each bit flipped with
    probability 0.05 (3.2 bits on average at 64 bits), plus 5% uniform background codes: clustered but mostly
    distinct, unlike the ITQ codes of the mixture, where 19 components collapse onto few distinct codes."""
    cen = np.random.default_rng(12345).integers(0, 256, (centres, bits // 8), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    out = np.empty((n, bits // 8), dtype=np.uint8)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        noise = np.packbits(rng.random((m, bits), dtype=np.float32) < flip, axis=1)
        block = cen[rng.integers(0, centres, m)] ^ noise
        bg = rng.random(m) < 0.05
        block[bg] = rng.integers(0, 256, (int(bg.sum()), bits // 8), dtype=np.uint8)
        out[s:s + m] = block
    return out


def make_codes(kind: str, n: int, bits: int, nq: int) -> tuple[np.ndarray, np.ndarray]:
    if kind == "uniform":
        rng = np.random.default_rng(5)
        return (rng.integers(0, 256, (n, bits // 8), dtype=np.uint8),
                rng.integers(0, 256, (nq, bits // 8), dtype=np.uint8))
    if kind == "clustered":
        return clustered_codes(n, bits, 7), clustered_codes(nq, bits, 8)
    rng = np.random.default_rng(0)
    centres = (2.0 * rng.standard_normal((COMPONENTS, D))).astype(np.float32)
    itq = ITQ(bits, seed=0).fit(mixture(50_000, 1, centres))
    return codes_for(n, itq, centres, seed=3), itq.encode(mixture(nq, 2, centres))


def radii_for(words: np.ndarray, qw: np.ndarray, bits: int, targets=(100, 1000, 10_000)) -> list[int]:  # type: ignore[no-untyped-def]
    """Per target, the smallest radius whose median hit count over 5 queries reaches it."""
    sub = np.random.default_rng(1).choice(words.shape[0], min(words.shape[0], 200_000), replace=False)
    scale = words.shape[0] / sub.size
    d = np.stack([np.bitwise_count(words[sub] ^ q).sum(1) for q in qw[:5]])
    out = []
    for t in targets:
        for r in range(bits + 1):
            if np.median((d <= r).sum(1)) * scale >= t:
                out.append(r)
                break
    return sorted(set(out))


def bench(kind: str, n: int, bits: int, nq: int, skip_ivf_above: int, skip_approx: bool = False) -> dict:
    codes, queries = make_codes(kind, n, bits, max(nq, 100))
    words, qw = as_words(codes), as_words(queries)
    res: dict = {"codes": kind, "n": n, "bits": bits, "code_bytes": int(codes.nbytes), "nq_single": nq}
    # memory floor and the compiled scan against it
    xor_floor(words)
    floor = min(timed(lambda: xor_floor(words))[1] for _ in range(5))
    res["floor_ms"] = round(floor * 1e3, 3)
    flat_knn(words, qw[:1], 10)
    exact = {k: flat_knn(words, qw[:nq], k) for k in KS}
    head = codes[:1_000_000]
    res["distinct_share_first_1e6"] = round(np.unique(head, axis=0).shape[0] / head.shape[0], 4)
    res["median_kth_distance"] = {k: float(np.median(exact[k][0][:, k - 1])) for k in KS}
    res["scan"] = {f"k{k}_ms": median_ms(lambda i, k=k: flat_knn(words, qw[i:i + 1], k), nq) for k in KS}
    res["scan"]["floor_ratio_k10"] = round(res["scan"]["k10_ms"] / res["floor_ms"], 2)
    res["scan"]["batch100_qps_k10"] = round(100 / timed(lambda: flat_knn(words, qw[:100], 10))[1], 1)
    # faiss flat
    flat = faiss.IndexBinaryFlat(bits)
    _, res_bt = timed(lambda: flat.add(codes))
    fd, _ = flat.search(queries[:nq], 10)
    res["faiss_flat"] = {"build_s": round(res_bt, 2),
                         "distances_equal_scan": bool((fd == exact[10][0]).all())}
    res["faiss_flat"].update({f"k{k}_ms": median_ms(lambda i, k=k: flat.search(queries[i:i + 1], k), nq)
                              for k in KS})
    res["faiss_flat"]["batch100_qps_k10"] = round(100 / timed(lambda: flat.search(queries[:100], 10))[1], 1)
    radii = radii_for(words, qw, bits)
    res["radii"] = radii
    res["radius"] = {"scan": {}, "faiss_flat": {}, "mih": {}, "exact-ivf": {}}
    ref_radius = {}
    for r in radii:
        ref_radius[r] = [flat_radius(words, qw[i], r) for i in range(nq)]
        res["radius"]["scan"][r] = {"ms": median_ms(lambda i, r=r: flat_radius(words, qw[i], r), nq),
                                    "median_hits": int(np.median([p.size for _, p in ref_radius[r]]))}
        res["radius"]["faiss_flat"][r] = {"ms": median_ms(lambda i, r=r: flat.range_search(queries[i:i + 1], r + 1),
                                                           nq)}
    flat.reset()
    gc.collect()
    # rsir structures
    structs = {}
    mih, bt = timed(lambda: MIHTables.build(words, bits))
    structs["mih"] = (mih, bt)
    res["mih_occupancy"] = mih.occupancy()
    res["mih_m"] = mih.m
    if n <= skip_ivf_above:
        ivf, bt = timed(lambda: ExactIVF.build(words, bits))
        structs["exact-ivf"] = (ivf, bt)
    for name, (st, bt) in structs.items():
        out: dict = {"build_s": round(bt, 2), "extra_bytes": st.nbytes,
                     "memory_x_codes": round((codes.nbytes + st.nbytes) / codes.nbytes, 2)}
        st.knn(qw[:1], 10)
        same = True
        for k in KS:
            d, p, stats = st.knn(qw[:nq], k)
            same &= bool((d == exact[k][0]).all() and (p == exact[k][1]).all())
            out[f"k{k}_ms"] = median_ms(lambda i, k=k, st=st: st.knn(qw[i:i + 1], k), nq)
            out[f"k{k}_median_candidates"] = int(np.median(stats[:, 0]))
            out[f"k{k}_fallback_share"] = round(float(stats[:, 3].mean()), 3)
            out[f"k{k}_speedup_vs_faiss_flat"] = round(res["faiss_flat"][f"k{k}_ms"] / max(out[f"k{k}_ms"], 1e-6), 1)
        out["batch100_qps_k10"] = round(100 / timed(lambda st=st: st.knn(qw[:100], 10))[1], 1)
        for r in radii:
            hits = [st.radius(qw[i], r) for i in range(nq)]
            same &= all((h[0] == e[0]).all() and (h[1] == e[1]).all()
                        for h, e in zip(hits, ref_radius[r], strict=True))
            res["radius"][name][r] = {"ms": median_ms(lambda i, r=r, st=st: st.radius(qw[i], r), nq),
                                      "median_candidates": int(np.median([h[2][0] for h in hits])),
                                      "fallback_share": round(float(np.mean([h[2][3] for h in hits])), 3)}
        out["identical_to_scan"] = same
        res[name] = out
    del structs, mih
    gc.collect()
    if skip_approx:
        return res
    # faiss approximate baselines
    nlist = int(max(1, min(round(np.sqrt(n)), 16384)))
    quant = faiss.IndexBinaryFlat(bits)
    ivf = faiss.IndexBinaryIVF(quant, bits, nlist)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    ivf.train(codes[np.sort(rng.choice(n, min(n, 30 * nlist), replace=False))])
    ivf.add(codes)
    ivf.nprobe = 16
    fi = {"build_s": round(time.perf_counter() - t0, 2), "nlist": nlist, "nprobe": 16}
    gd, gp = ivf.search(queries[:nq], 10)
    fi.update(recall(exact[10][1], exact[10][0], gp, gd))
    fi["k10_ms"] = median_ms(lambda i: ivf.search(queries[i:i + 1], 10), nq)
    res["faiss_ivf"] = fi
    ivf.reset()
    gc.collect()
    nhash = max(1, round(bits / np.log2(n)))
    b = min(bits // nhash, 24)
    mh = faiss.IndexBinaryMultiHash(bits, nhash, b)
    _, bt = timed(lambda: mh.add(codes))
    mh.nflip = 2
    fm = {"build_s": round(bt, 2), "nhash": nhash, "b": b, "nflip": 2}
    gd, gp = mh.search(queries[:nq], 10)
    fm.update(recall(exact[10][1], exact[10][0], gp, gd))
    fm["k10_ms"] = median_ms(lambda i: mh.search(queries[i:i + 1], 10), nq)
    res["faiss_multihash"] = fm
    mh.reset()
    gc.collect()
    return res


def markdown(rep: dict) -> str:
    lines = ["| codes | n | bits | method | k=1 | k=10 | k=100 | k=1000 ms | batch q/s k=10 | build s | memory x codes "
             "| exact |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rep["results"]:
        for name in ("faiss_flat", "scan", "mih", "exact-ivf"):
            if name not in r:
                continue
            m = r[name]
            mem = m.get("memory_x_codes", 1.0)
            ok = {"faiss_flat": "yes", "scan": "yes"}.get(name, "yes" if m.get("identical_to_scan") else "NO")
            lines.append(f"| {r['codes']} | {r['n']:.0e} | {r['bits']} | {name} | {m['k1_ms']} | {m['k10_ms']} | "
                         f"{m['k100_ms']} | {m['k1000_ms']} | {m['batch100_qps_k10']} | {m.get('build_s', '-')} | "
                         f"{mem} | {ok} |")
        for name in ("faiss_ivf", "faiss_multihash"):
            if name not in r:
                continue
            m = r[name]
            lines.append(f"| {r['codes']} | {r['n']:.0e} | {r['bits']} | {name} | - | {m['k10_ms']} | - | - | - | "
                         f"{m['build_s']} | - | recall@10 {m['id_recall']} |")
    lines += ["", "| codes | n | bits | radius | median hits | scan ms | faiss flat ms | mih ms (cands) | "
              "exact-ivf ms (cands) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rep["results"]:
        for rad in r["radii"]:
            rr = r["radius"]
            def cell(name: str, rad: int = rad, rr: dict = rr) -> str:
                c = rr.get(name, {}).get(rad) or rr.get(name, {}).get(str(rad))
                return "-" if not c else f"{c['ms']} ({c['median_candidates']})"
            sc = rr["scan"].get(rad) or rr["scan"][str(rad)]
            ff = rr["faiss_flat"].get(rad) or rr["faiss_flat"][str(rad)]
            lines.append(f"| {r['codes']} | {r['n']:.0e} | {r['bits']} | {rad} | {sc['median_hits']} | {sc['ms']} | "
                         f"{ff['ms']} | "
                         f"{cell('mih')} | {cell('exact-ivf')} |")
    return "\n".join(lines)


def plot(rep: dict, path: Path) -> None:
    """Single-query latency against k, one panel per (codes, n), one line per method; faiss flat dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = rep["results"]
    fig, axes = plt.subplots(1, len(res), figsize=(4.2 * len(res), 3.6), squeeze=False)
    for ax, r in zip(axes[0], res, strict=True):
        for name, style in (("faiss_flat", "k--"), ("scan", "o-"), ("mih", "s-"), ("exact-ivf", "^-")):
            if name in r:
                ax.plot(KS, [r[name][f"k{k}_ms"] for k in KS], style, label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("k")
        ax.set_title(f"{r['codes']} {r['n']:.0e} x {r['bits']} bits", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("median single-query ms (1 thread)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--bits", type=int, nargs="+", default=[64])
    ap.add_argument("--codes", nargs="+", default=["learned", "clustered", "uniform"])
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--skip-ivf-above", type=int, default=10_000_000)
    ap.add_argument("--skip-approx", action="store_true", help="leave out faiss IVF and MultiHash")
    ap.add_argument("--out", default=str(HERE / "results" / "exact_search.json"))
    ap.add_argument("--report-only", action="store_true", help="only redraw the table and plot from --out")
    ap.add_argument("--append", action="store_true",
                    help="add this run's rows (and its command and load, under 'runs') to an existing --out")
    args = ap.parse_args()
    if args.report_only:
        rep = json.loads(Path(args.out).read_text())
        plot(rep, Path(args.out).with_suffix(".png"))
        print(markdown(rep))
        return
    faiss.omp_set_num_threads(1)
    run = {"command": " ".join(["bench/exact_search_bench.py", *sys.argv[1:]]), "load_average_start": os.getloadavg(),
           "load_average_end": None, "total_s": None}
    rep: dict = {"machine": machine(), "results": [], "runs": []}
    if args.append and Path(args.out).exists():
        rep = json.loads(Path(args.out).read_text())
        rep.setdefault("runs", [])
    rep["runs"].append(run)
    t0 = time.perf_counter()
    for n in args.sizes:
        for bits in args.bits:
            for kind in args.codes:
                r = bench(kind, n, bits, args.queries, args.skip_ivf_above, args.skip_approx)
                r["load_average"] = os.getloadavg()
                print(json.dumps(r), flush=True)
                same = [i for i, o in enumerate(rep["results"])
                        if (o["codes"], o["n"], o["bits"]) == (kind, n, bits)]
                if same:  # a re-run replaces its configuration's row (the old run stays listed under runs)
                    rep["results"][same[0]] = r
                else:
                    rep["results"].append(r)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(rep, indent=1))
                gc.collect()
    run["total_s"] = round(time.perf_counter() - t0, 1)
    run["load_average_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(rep, indent=1))
    plot(rep, Path(args.out).with_suffix(".png"))
    print(markdown(rep))


if __name__ == "__main__":
    main()
