"""Issue 12: where in its candidate set does each sampler pick its positives and negatives?

For batches of 90 training items (as MiLAN trains), every miner of `rsir.methods.recipes.make_miner` is applied to
the hash-head outputs the training loop would give it, and for each chosen (anchor, positive) and (anchor,
negative) this records the hardness percentile of the pick among the anchor's candidates (0 = the hardest: the
farthest positive, the nearest negative; 50 = a random pick; 100 = the easiest) and the Jaccard relevance of the
chosen positives. Two states of the head: freshly initialised (He, the seed of the run) and the head trained by
the random sampler in bench/sampler_bench.py (ablation-random); the features are that run's frozen classifier.

Usage: python bench/sampler_hardness.py --work /work/bench-data/issue12/run-hard \
           --archive /work/bench-data/issue12/sim-hard-2k --out bench/results/sampler_hardness_hard.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rsir.data.archive import open_archive  # noqa: E402
from rsir.losses.triplet import SquaredEuclidean  # noqa: E402
from rsir.methods.recipes import MilanRecipe, make_miner  # noqa: E402
from rsir.miners.multilabel_diverse import jaccard_matrix  # noqa: E402
from rsir.models.io import load_model  # noqa: E402

SAMPLERS = ("random", "batch-hard", "semi-hard", "diverse", "diverse-rf")


def percentiles(h: torch.Tensor, labels: torch.Tensor, idx: tuple[torch.Tensor, ...], dist: Any) -> dict[str, Any]:
    """Hardness percentiles of the chosen positives / negatives and the Jaccard relevance of the positives."""
    d = dist.pairwise(h).double().numpy()
    lab = labels.numpy()
    share = (lab @ lab.T) > 0
    jac = jaccard_matrix(labels)
    pp, nn_, rel, rel_all = [], [], [], []
    seen: set[tuple[int, int]] = set()
    seen_n: set[tuple[int, int]] = set()
    for a, p, n in zip(*(t.tolist() for t in idx), strict=True):
        if (a, p) not in seen:
            seen.add((a, p))
            cand = [j for j in range(len(lab)) if j != a and share[a, j]]
            # rank 0 = farthest positive
            order = sorted(cand, key=lambda j: -d[a, j])
            pp.append(100.0 * order.index(p) / max(len(cand) - 1, 1))
            rel.append(jac[a, p])
            rel_all.append(float(np.mean([jac[a, j] for j in cand])))
        if (a, n) not in seen_n:
            seen_n.add((a, n))
            cand = [j for j in range(len(lab)) if not share[a, j]]
            order = sorted(cand, key=lambda j: d[a, j])
            nn_.append(100.0 * order.index(n) / max(len(cand) - 1, 1))
    return {"pos_pct": pp, "neg_pct": nn_, "pos_jaccard": rel, "cand_jaccard": rel_all}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--archive", required=True)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(args.work)
    arch = open_archive(args.archive)
    pos = arch.split_positions("train")
    cls, _ = load_model(work / "classifier")
    fast = cls.eval().for_inference()  # the frozen features the MiLAN head trains on (train_api._features)
    with torch.no_grad():
        feats = torch.cat([fast(torch.from_numpy(b))["features"].float()
                           for _, b in arch.batches(128, positions=pos)])
    labels = torch.from_numpy(arch.labels[pos].astype(np.float32))
    trained, _ = load_model(work / "ablation-random")
    heads: dict[str, torch.nn.Module] = {}
    torch.manual_seed(0)
    heads["initialised (He, seed 0)"] = MilanRecipe(feats.shape[1], 64, sampler="random", seed=0).net
    heads["trained by the random sampler (the ablation run, seed 0)"] = trained.hash_head
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(pos), 90, replace=False) for _ in range(args.batches)]
    out: dict[str, Any] = {"archive": args.archive, "batches": args.batches, "batch_size": 90,
                           "loadavg": [round(v, 2) for v in os.getloadavg()], "heads": {}}
    for hname, head in heads.items():
        head.eval()
        with torch.no_grad():
            h_all = head(feats).float()
        res: dict[str, Any] = {}
        dist = SquaredEuclidean(normalize=True)  # the distance every miner of make_miner uses
        for s in SAMPLERS:
            miner = make_miner(s, seed=0)
            acc: dict[str, list[float]] = {"pos_pct": [], "neg_pct": [], "pos_jaccard": [], "cand_jaccard": []}
            for b in batches:
                bt = torch.from_numpy(b)
                h, lab = h_all[bt], labels[bt]
                r = percentiles(h, lab, miner(h, lab), dist)
                for k in acc:
                    acc[k] += r[k]
            res[s] = {"median_pos_hardness_pct": round(float(np.median(acc["pos_pct"])), 1),
                      "median_neg_hardness_pct": round(float(np.median(acc["neg_pct"])), 1),
                      "mean_pos_jaccard": round(float(np.mean(acc["pos_jaccard"])), 3),
                      "mean_candidate_jaccard": round(float(np.mean(acc["cand_jaccard"])), 3),
                      "pairs": len(acc["pos_pct"])}
        out["heads"][hname] = res
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(markdown(out))


def markdown(doc: dict[str, Any]) -> str:
    lines = ["| head | sampler | median hardness pct. of positives | of negatives | Jaccard of chosen positives "
             "(mean of all candidates) |", "|---|---|---:|---:|---:|"]
    for h, res in doc["heads"].items():
        for s, r in res.items():
            lines.append(f"| {h} | {s} | {r['median_pos_hardness_pct']} | {r['median_neg_hardness_pct']} | "
                         f"{r['mean_pos_jaccard']} ({r['mean_candidate_jaccard']}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
