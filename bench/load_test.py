"""Bounded load test of the search service on loopback: a fixed number of /api/search/id requests at a fixed
concurrency against a served index of N (default 1M) 64-bit ITQ codes of clustered features.

The archive is a catalog-only rsir archive (ids, labels, splits; no pixels: search by id needs only the stored
codes), the codes come from ITQ fitted on a 20k sample of Gaussian-cluster features (labels follow the cluster),
so the code distribution is that of a real hashing method, not uniform random bits. The server runs in a child
process (uvicorn, 127.0.0.1 only); this process sends the requests with httpx from a thread pool and writes
p50/p99 latency and queries/s to bench/results/load.json.

    .venv/bin/python bench/load_test.py --n 1000000 --requests 2000 --concurrency 8
    .venv/bin/python bench/load_test.py --n 10000000 --kind auto --radius 10 --requests 1000 \
        --out bench/results/load_radius_1e7.json   # radius queries: every item within 10 bits
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIM, BITS, CLUSTERS = 64, 64, 256


def index_path(work: Path, kind: str = "flat") -> Path:
    """Where ``build`` writes the index of ``kind`` (one directory per kind beside the shared archive)."""
    return work / f"index-{kind}"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for the child server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(client: Any, child: subprocess.Popen[bytes], limit_s: float = 600) -> float:
    """Poll ``/api/health`` of the child server until it answers 200; seconds waited (SystemExit if the child
    dies or ``limit_s`` passes)."""
    import httpx

    t0 = time.perf_counter()
    while True:
        try:
            if client.get("/api/health").status_code == 200:
                return time.perf_counter() - t0
        except httpx.TransportError:
            pass
        if child.poll() is not None or time.perf_counter() - t0 > limit_s:
            raise SystemExit("server did not start")
        time.sleep(0.5)


def build(work: Path, n: int, kind: str = "flat", seed: int = 0) -> float:
    """Catalog-only archive + a Hamming index of ITQ codes of ``kind`` (rsir index --kind) under ``work``
    (each skipped when already there); returns the seconds spent building the index."""
    from rsir.hashing import hasher_class
    from rsir.index import make_index

    if (index_path(work, kind) / "manifest.json").exists() and (work / "archive" / "manifest.json").exists():
        return 0.0
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (CLUSTERS, DIM)).astype(np.float32)
    cluster_labels = [sorted(set(rng.choice(19, size=int(rng.integers(1, 4))).tolist())) for _ in range(CLUSTERS)]
    assign = rng.integers(0, CLUSTERS, n)
    # ITQ is fitted on 20,000 codes' worth of vectors; np.resize repeats the assignments when n is smaller
    sample = centres[np.resize(assign, 20000)] + 0.6 * rng.normal(0, 1, (20000, DIM)).astype(np.float32)
    itq = hasher_class("itq")(BITS, seed=seed)
    itq.fit(sample)
    codes = np.empty((n, BITS // 8), np.uint8)
    for s in range(0, n, 100_000):
        a = assign[s:s + 100_000]
        x = centres[a] + 0.6 * rng.normal(0, 1, (len(a), DIM)).astype(np.float32)
        codes[s:s + len(a)] = itq.encode(x)
    ids = [f"p{i:07d}" for i in range(n)]
    if not (work / "archive" / "manifest.json").exists():
        write_catalog(work, n, ids, assign, cluster_labels)
    t0 = time.perf_counter()
    index = make_index("hamming", BITS, kind=kind)
    index.add(np.array(ids, dtype=object), codes)
    index.save(index_path(work, kind))  # auto chooses its structure here (timed on the stored codes)
    return time.perf_counter() - t0


def write_catalog(work: Path, n: int, ids: list[str], assign: np.ndarray, cluster_labels: list[list[int]]) -> None:
    """The catalog-only archive: labels follow each code's cluster, three splits in turn, no pixels."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rsir.data.archive import CATALOG_COLUMNS, ArchiveWriter, atomic_write_json
    from rsir.data.bands import s2_spec
    from rsir.data.nomenclature import BEN19

    # one item goes through the ArchiveWriter (manifest, store, format); the catalog of all n is then written
    # column-wise with the archive's own schema, as the per-item writer would take ~15 min for 1M rows
    with ArchiveWriter(work / "archive", [s2_spec(12)], BEN19, "load-test", overwrite=True) as w:
        w.add(ids[0], {}, {})
        w.close()
    # columns built from per-cluster values with Arrow's take (10^7 rows stay cheap); constants by repeat
    lab_names = [[BEN19.classes[c] for c in labs] for labs in cluster_labels]
    take = pa.array(assign)
    per_cluster = {"labels": pa.array(lab_names, type=CATALOG_COLUMNS["labels"]),
                   "label_vec": pa.array([BEN19.encode(x).tolist() for x in lab_names],
                                         type=CATALOG_COLUMNS["label_vec"])}
    cols = {}
    for name, typ in CATALOG_COLUMNS.items():
        if name == "id":
            cols[name] = pa.array(ids, type=typ)
        elif name == "split":
            cols[name] = pa.array(np.array(["train", "validation", "test"])[np.arange(n) % 3], type=typ)
        elif name in per_cluster:
            cols[name] = per_cluster[name].take(take)
        elif name in ("lon", "lat"):
            cols[name] = pa.array(np.full(n, np.nan), type=typ)
        elif name in ("bbox", "transform"):
            cols[name] = pa.nulls(n, type=typ)
        elif pa.types.is_list(typ):
            cols[name] = pa.repeat(pa.scalar([], type=typ), n)
        else:
            cols[name] = pa.repeat(pa.scalar("", type=typ), n)
    table = pa.table(cols, schema=pa.schema(list(CATALOG_COLUMNS.items())))
    pq.write_table(table, work / "archive" / "catalog.parquet")
    manifest = json.loads((work / "archive" / "manifest.json").read_text())
    manifest["n_items"] = n
    atomic_write_json(work / "archive" / "manifest.json", manifest)


def rss_gb(pid: int) -> float | None:
    """Resident memory of a process in GB (Linux /proc; None elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return None


def structure(work: Path, kind: str) -> dict[str, object]:
    """What the index manifest says about its search structure (auto's choice and timings)."""
    params = json.loads((index_path(work, kind) / "manifest.json").read_text()).get("params", {})
    return {k: params[k] for k in ("kind", "chosen", "auto", "mih_m") if k in params}


class _CodesOnly:
    """Encoder stand-in: the load test searches by archive id, which uses the stored codes only."""

    modality = "s2"
    metric = "hamming"
    dim = BITS
    kind = "classic"

    def encode(self, images: np.ndarray) -> np.ndarray:
        raise RuntimeError("the load test searches by id only")


def serve(work: Path, port: int, kind: str) -> None:
    """Child process: open the archive and index, serve on 127.0.0.1."""
    import uvicorn

    from rsir.data.archive import open_archive
    from rsir.index import open_index
    from rsir.pipeline import IndexDir
    from rsir.query import SearchEngine
    from rsir.service.app import create_app

    engine = SearchEngine(IndexDir(work, {}, open_index(index_path(work, kind)), _CodesOnly()),  # type: ignore[arg-type]
                          open_archive(work / "archive"))
    uvicorn.run(create_app(engine=engine), host="127.0.0.1", port=port, log_level="warning")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--kind", default="flat", help="index kind (rsir index --kind): flat (faiss), auto, scan, mih, "
                    "exact-ivf")
    ap.add_argument("--radius", type=int, default=None,
                    help="send radius queries (every item within this Hamming distance; k results per page)")
    ap.add_argument("--work", default="/tmp/rsir-load")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "load.json"))
    ap.add_argument("--serve-port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = Path(args.work) / f"n{args.n}"
    if args.serve_port:
        serve(work, args.serve_port, args.kind)
        return 0
    import httpx

    t0 = time.perf_counter()
    index_build_s = build(work, args.n, args.kind)
    build_s = time.perf_counter() - t0
    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--n", str(args.n), "--work", args.work,
                              "--kind", args.kind, "--serve-port", str(port)], env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])})
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=120) as c:
            startup_s = wait_until_up(c, child)
        rss_up = rss_gb(child.pid)
        rng = np.random.default_rng(1)
        queries = [f"p{i:07d}" for i in rng.integers(0, args.n, args.requests)]
        lat: list[float] = []
        precisions: list[float] = []
        with httpx.Client(base_url=base, timeout=120,
                          limits=httpx.Limits(max_connections=args.concurrency)) as c:
            extra = {} if args.radius is None else {"radius": args.radius}
            c.post("/api/search/id", json={"id": queries[0], "k": args.k, **extra})  # warm-up

            def one(q: str) -> tuple[float, float, float, int]:
                s = time.perf_counter()
                r = c.post("/api/search/id", json={"id": q, "k": args.k, **extra})
                r.raise_for_status()
                body = r.json()
                assert len(body["results"]) == min(args.k, body.get("within", args.k)), body
                return time.perf_counter() - s, body["query_ms"], body["precision"], int(body.get("within", -1))

            t2 = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                out = list(pool.map(one, queries))
            wall = time.perf_counter() - t2
        lat = [o[0] * 1000 for o in out]
        server_ms = [o[1] for o in out]
        precisions = [o[2] for o in out]
        within = np.array([o[3] for o in out])
        res = {
            "what": f"POST /api/search/id, k={args.k}" + ("" if args.radius is None else
                                                           f", radius={args.radius} (every item within it, counted)")
                    + f", over loopback (uvicorn, 1 worker), index kind {args.kind}",
            "n_codes": args.n, "kind": args.kind, "structure": structure(work, args.kind), "radius": args.radius,
            **({} if args.radius is None else {"hits_per_query": {
                "min": int(within.min()), "p50": float(np.median(within)), "p90": float(np.percentile(within, 90)),
                "max": int(within.max()), "share_over_10k": float((within >= 10_000).mean())}}), "bits": BITS, "codes": f"ITQ on {CLUSTERS} Gaussian clusters in {DIM}-d",
            "requests": args.requests, "concurrency": args.concurrency,
            "latency_ms": {"p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90)),
                           "p99": float(np.percentile(lat, 99)), "mean": float(np.mean(lat))},
            "server_query_ms": {"p50": float(np.percentile(server_ms, 50)),
                                "p99": float(np.percentile(server_ms, 99))},
            "queries_per_s": args.requests / wall, "wall_s": wall, "mean_precision_at_k": float(np.mean(precisions)),
            "build_s": build_s, "index_build_s": index_build_s, "server_startup_s": startup_s,
            "server_rss_gb": {"after_startup": rss_up, "at_end": rss_gb(child.pid)},
            "load_average_at_end": os.getloadavg(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))
        print(json.dumps(res, indent=2))
    finally:
        child.terminate()
        child.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
