"""The free-text query list through the product: every sentence of bench/text_queries.json searched in a DUCH
INDEX by SearchEngine.search_text (what rsir search --text and POST /api/search/text run) in each text mode, over
the test split (filter split=test, as bench/duch_bench.py's database), scored by P@10 with the query list's label
relevance, per query group, with the part that answered.

    nice -n 10 .venv/bin/python bench/text_query_product.py INDEX [--out bench/results/text_query_product.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("index")
    ap.add_argument("--queries", default=str(ROOT / "bench" / "text_queries.json"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "text_query_product.json"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from rsir.query import Filters, SearchEngine

    eng = SearchEngine.open(args.index)
    queries = json.loads(Path(args.queries).read_text())["queries"]
    per: dict[str, list[dict[str, object]]] = {}
    for mode in ("learned", "matcher", "hybrid"):
        per[mode] = []
        for q in queries:
            res, match = eng.search_text(q["text"], k=10, filters=Filters(split=args.split), mode=mode)
            labs = [set(h.labels) for h in res.hits]
            rel = [all(set(g) & lab for g in q["relevant"]) for lab in labs]
            # fewer than 10 hits (the matcher found nothing or few items) count as misses
            per[mode].append({"P@10": sum(rel) / 10, "answered": res.query["answered"], "found": match.labels})
    sys.path.insert(0, str(ROOT / "bench"))
    from duch_bench import matcher_outcome

    groups: dict[str, list[int]] = {}
    for j, q in enumerate(queries):
        groups.setdefault(q["group"], []).append(j)
        if matcher_outcome(per["matcher"][j]["found"], q["relevant"]) != "right":  # type: ignore[arg-type]
            groups.setdefault("matcher finds no class or a wrong one", []).append(j)
    groups["all"] = list(range(len(queries)))
    table = {mode: {g: round(float(np.mean([per[mode][j]["P@10"] for j in ix])), 3) for g, ix in groups.items()}
             for mode in per}
    out = {"index": str(args.index), "split": args.split, "n_queries": len(queries),
           "group_sizes": {g: len(ix) for g, ix in groups.items()}, "P@10": table,
           "hybrid_answered_by": {a: sum(1 for p in per["hybrid"] if p["answered"] == a)
                                  for a in {str(p["answered"]) for p in per["hybrid"]}},
           "per_query": [{"text": q["text"], "group": q["group"],
                          **{m: per[m][j]["P@10"] for m in per}, "hybrid_answered": per["hybrid"][j]["answered"]}
                         for j, q in enumerate(queries)],
           "machine": {"cpus": os.cpu_count(), "loadavg_end": list(os.getloadavg()),
                       "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
    print(json.dumps({k: out[k] for k in ("group_sizes", "P@10", "hybrid_answered_by")}, indent=1))
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
