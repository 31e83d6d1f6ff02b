"""Markdown tables from bench/results/duch*.json (the DUCH benchmark): retrieval per run, and the free-text
query list by group.

    .venv/bin/python bench/duch_table.py bench/results/duch.json [more.json ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    runs: dict = {}
    queries: dict = {}
    qlist = None
    for p in sys.argv[1:]:
        d = json.loads(Path(p).read_text())
        tag = f" (hidden {d['meta']['hidden']})"
        for name, r in d["runs"].items():
            key = name if name in ("label matcher",) or name.startswith("float") else name + tag
            runs.setdefault(key, r)
        for name, per in d["queries"].items():
            key = name if name in ("label matcher",) or name.startswith(("float", "hybrid")) else name + tag
            queries.setdefault(key, per)
        qlist = qlist or d["query_list"]
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print("| run | i2t mAP@20 (B) | t2i mAP@20 (B) | i2i mAP@20 (B) | t2t mAP@20 (B) | i2t mAP@20 (A) | "
          "t2i mAP@20 (A) | i2t R@1/5/10 | t2i R@1/5/10 | mR | train s (s/epoch) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in runs.items():
        dr = r["directions"]
        g = lambda d, k, dr=dr: dr.get(d, {}).get(k)  # noqa: E731
        rec = dr.get("recall", {})
        ri = "/".join(f"{rec[f'i2t_R@{k}']:.3f}" for k in (1, 5, 10)) if rec else "-"
        rt = "/".join(f"{rec[f't2i_R@{k}']:.3f}" for k in (1, 5, 10)) if rec else "-"
        tr = f"{r['train_s']:.0f} ({r['s_per_epoch']:.1f})" if "s_per_epoch" in r else (
            f"{r['train_s']:.0f}" if "train_s" in r else "-")
        print(f"| {name} | {f(g('i2t', 'mAP@20(B)'))} | {f(g('t2i', 'mAP@20(B)'))} | {f(g('i2i', 'mAP@20(B)'))} | "
              f"{f(g('t2t', 'mAP@20(B)'))} | {f(g('i2t', 'mAP@20(A)'))} | {f(g('t2i', 'mAP@20(A)'))} | {ri} | {rt} | "
              f"{f(rec.get('mR'))} | {tr} |")
    assert qlist is not None
    groups = ["class name", "synonym", "two classes", "unknown words"]
    subsets = {g: [j for j, q in enumerate(qlist) if q["group"] == g] for g in groups}
    subsets["matcher finds no class or a wrong one"] = [j for j, q in enumerate(qlist) if q["matcher"] != "right"]
    subsets["all"] = list(range(len(qlist)))
    print()
    print("| run | " + " | ".join(f"{g} ({len(ix)}) P@10 / mAP@20(B)" for g, ix in subsets.items()) + " |")
    print("|---|" + "---|" * len(subsets))
    for name, per in queries.items():
        cells = []
        for ix in subsets.values():
            p = np.mean([per[j]["P@10"] for j in ix]) if ix else float("nan")
            m = np.mean([per[j]["mAP@20(B)"] for j in ix]) if ix else float("nan")
            cells.append(f"{p:.3f} / {m:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
