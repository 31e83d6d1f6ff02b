"""Latency of one text query at 100k indexed patches, in two parts.

Parts (in-process): sentence encoding (MiniLM, uncached), the DUCH text head (hidden 4096, 64 bits) and the exact
Hamming kNN (k = 20) over 100,000 codes, as the service's text route runs them. Random codes stand in for an
archive's (a flat scan's cost does not depend on their values); the head is untrained (its cost does not depend on
its weights).

Service (``--service``): POST /api/search/text over loopback to ``rsir serve``'s app (uvicorn in a child process,
one client, one request at a time) on a catalog-only archive of N patches with 64-bit codes (bench/load_test.py's
build: ITQ codes of clustered features, labels per cluster) and an untrained DUCH model (hidden 4096), for each
text mode: learned (every query through MiniLM + the head + the kNN), matcher (label ranking over the N
patches' labels) and hybrid (the product default) on the 73 sentences of bench/text_queries.json, each made
unique by a number so that the query cache never answers.

    nice -n 10 .venv/bin/python bench/text_query_bench.py [--n 100000] [--queries 300] [--service]

Writes bench/results/text_query.json (the load average is recorded: the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from load_test import build, free_port, index_path, wait_until_up  # noqa: E402


def _pct(v: list[float]) -> dict[str, float]:
    return {p: round(float(np.percentile(v, int(p[1:]))), 2) for p in ("p50", "p95", "p99")}


def _service_dir(work: Path, n: int) -> Path:
    """bench/load_test.py's catalog-only archive + 64-bit index of ``n`` patches, and an untrained DUCH model."""
    import torch

    from rsir.data.archive import open_archive
    from rsir.models.duch import DuchConfig, DuchNet, save_duch
    from rsir.models.io import ModelMeta
    from rsir.models.net import NetConfig, RetrievalNet
    from rsir.models.resnet import ResNetConfig

    work = work / f"n{n}"
    build(work, n)
    if not (work / "duch" / "config.json").is_file():
        a = open_archive(work / "archive")
        bands = list(a.spec("s2").bands)
        torch.manual_seed(0)
        feats = RetrievalNet(NetConfig(ResNetConfig(len(bands), 16, [1, 1]), n_classes=19, output="features"))
        meta = ModelMeta("s2", bands, [0.0] * len(bands), [1.0] * len(bands), 60, list(a.nomenclature.classes))
        save_duch(work / "duch", DuchNet(DuchConfig(feats.feature_dim, 384, 64, 4096)), feats.eval(), meta)
    return work


def _serve(work: Path, port: int) -> None:
    """Child process: the service's app on the built archive and index with the DUCH model, on 127.0.0.1."""
    import torch
    import uvicorn

    torch.set_num_threads(1)
    from rsir.data.archive import open_archive
    from rsir.index import open_index
    from rsir.models.duch import DuchEncoder
    from rsir.pipeline import IndexDir
    from rsir.query import SearchEngine
    from rsir.service.app import create_app

    index_dir = IndexDir(work, {"method": "duch", "text": {"captions": 0}}, open_index(index_path(work)),
                         DuchEncoder(work / "duch"))  # type: ignore[arg-type]
    uvicorn.run(create_app(engine=SearchEngine(index_dir, open_archive(work / "archive"))), host="127.0.0.1",
                port=port, log_level="warning")


def service_latency(work: Path, n: int, requests: int, k: int = 20) -> dict[str, Any]:
    """p50/p95/p99 of POST /api/search/text per text mode (wall time at the client and the server's query_ms)."""
    import httpx

    t0 = time.perf_counter()
    work = _service_dir(work, n)
    build_s = time.perf_counter() - t0
    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(work), "--port", str(port)],
                             env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])})
    sentences = [q["text"] for q in json.loads((ROOT / "bench" / "text_queries.json").read_text())["queries"]]
    out: dict[str, Any] = {"n_indexed": n, "bits": 64, "k": k, "requests_per_mode": requests, "build_s": build_s}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
            out["server_startup_s"] = round(wait_until_up(c, child), 1)
            c.post("/api/search/text", json={"text": "warm up", "k": k, "mode": "learned"}).raise_for_status()
            for mode in ("learned", "matcher", "hybrid"):
                wall: list[float] = []
                server: list[float] = []
                parts: dict[str, int] = {}
                for i in range(requests):
                    text = f"{sentences[i % len(sentences)]} {i}"
                    t = time.perf_counter()
                    r = c.post("/api/search/text", json={"text": text, "k": k, "mode": mode})
                    wall.append((time.perf_counter() - t) * 1000)
                    r.raise_for_status()
                    body = r.json()
                    server.append(body["query_ms"])
                    parts[body["query"]["answered"]] = parts.get(body["query"]["answered"], 0) + 1
                out[mode] = {"wall_ms": _pct(wall), "server_query_ms": _pct(server), "answered_by": parts}
                print(mode, out[mode], flush=True)
    finally:
        child.terminate()
        child.wait(10)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--service", action="store_true", help="also time POST /api/search/text at --n patches")
    ap.add_argument("--service-requests", type=int, default=300)
    ap.add_argument("--work", default=str(ROOT / "bench" / "work" / "text-service"))
    ap.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "text_query.json"))
    args = ap.parse_args()
    if args.serve:
        _serve(Path(args.serve), args.port)
        return
    import torch

    torch.set_num_threads(args.threads)
    from rsir.index import make_index
    from rsir.models.duch import DuchConfig, DuchNet, codes
    from rsir.text.sentences import SentenceEncoder

    rng = np.random.default_rng(0)
    idx = make_index("hamming", args.bits, "flat")
    idx.add(np.array([f"item{i}" for i in range(args.n)], dtype=object),
            rng.integers(0, 256, (args.n, args.bits // 8), dtype=np.uint8))
    net = DuchNet(DuchConfig(64, 384, args.bits, 4096)).eval()
    enc = SentenceEncoder()
    enc.encode(["warm up"])
    words = ("forest lake river fields town sea beach marsh pasture vineyard orchard heath dunes coast farmland "
             "meadow industrial houses pine oak flooded young trees small plots lagoon").split()
    texts = [" ".join(rng.choice(words, int(rng.integers(2, 8)))) + f" {i}" for i in range(args.queries)]
    parts: dict[str, list[float]] = {"encode": [], "head": [], "knn": [], "total": []}
    load_start = list(os.getloadavg())
    for t in texts:
        t0 = time.perf_counter()
        v = enc.encode_query(t)
        t1 = time.perf_counter()
        with torch.inference_mode():
            q = codes(net.text_head(torch.from_numpy(np.array(v[None]))))
        t2 = time.perf_counter()
        idx.search(q, 20)
        t3 = time.perf_counter()
        for k, a, b in (("encode", t0, t1), ("head", t1, t2), ("knn", t2, t3), ("total", t0, t3)):
            parts[k].append((b - a) * 1000)
    load_parts = list(os.getloadavg())
    res: dict[str, Any] = {"n_indexed": args.n, "bits": args.bits, "queries": args.queries,
                           "ms": {k: _pct(v) for k, v in parts.items()}}
    if args.service:
        res["service"] = service_latency(Path(args.work), args.n, args.service_requests)
    res["machine"] = {"cpus": os.cpu_count(), "loadavg_start": load_start, "loadavg_after_parts": load_parts,
                      "loadavg_end": list(os.getloadavg()),
                      "torch_threads": args.threads, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(json.dumps(res, indent=1))
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
