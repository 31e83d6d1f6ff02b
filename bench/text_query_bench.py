"""Latency of one text query at 100k indexed patches: sentence encoding (MiniLM, uncached), the DUCH text head
(hidden 4096, 64 bits) and the exact Hamming kNN (k = 20) over 100,000 codes, as the service's text route runs
them (the HTTP layer and the result records are measured by bench/load_test.py, not here).

    nice -n 10 .venv/bin/python bench/text_query_bench.py [--n 100000] [--queries 300]

Writes bench/results/text_query.json. Random codes stand in for an archive's (a flat scan's cost does not depend
on their values); the head is untrained (its cost does not depend on its weights).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "text_query.json"))
    args = ap.parse_args()
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
    out = {k: {"p50": round(float(np.percentile(v, 50)), 2), "p95": round(float(np.percentile(v, 95)), 2),
               "p99": round(float(np.percentile(v, 99)), 2)} for k, v in parts.items()}
    res = {"n_indexed": args.n, "bits": args.bits, "queries": args.queries, "ms": out,
           "machine": {"cpus": os.cpu_count(), "loadavg_end": list(os.getloadavg()), "torch_threads": args.threads}}
    print(json.dumps(res, indent=1))
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
