"""DUCH on a simulated archive: code lengths, loss ablations, a float InfoNCE baseline and the label matcher, on
the test split (captions in held-out wording), plus the free-text query list of bench/text_queries.json.

    nice -n 10 .venv/bin/python bench/duch_bench.py --archive A --features CLASSIFIER_DIR [--epochs 30]

Everything is computed in-process on precomputed frozen features (the same code as rsir train --method duch:
rsir.methods.duch.prepare / fit_duch); ranking and metrics are rsir.eval.crossmodal (leave-own-out over the test
split). Writes bench/results/duch.json; BENCHMARKS.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _codes(h: Any) -> np.ndarray:
    from rsir.bits import pack_bits

    return pack_bits(np.asarray(h) > 0)


def float_baseline(data: Any, fit: np.ndarray, epochs: int, dim: int = 256, lr: float = 1e-3, tau: float = 0.07,
                   seed: int = 0, batch: int = 256) -> tuple[Any, Any]:
    """Linear projections of the same frozen features trained with symmetric InfoNCE (no hashing)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    pi = torch.nn.Linear(data.img.shape[1], dim)
    pt = torch.nn.Linear(data.txt.shape[1], dim)
    opt = torch.optim.Adam(list(pi.parameters()) + list(pt.parameters()), lr=lr)
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(fit)
    for _ in range(epochs):
        order = rows[rng.permutation(len(rows))]
        cap = data.cap_start + (rng.random(len(data.ids)) * data.cap_count).astype(np.int64)
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            if len(idx) < 2:
                continue
            zi = F.normalize(pi(data.img[idx]), dim=1)
            zt = F.normalize(pt(data.txt[cap[idx]]), dim=1)
            logits = zi @ zt.T / tau
            tgt = torch.arange(len(idx))
            loss = (F.cross_entropy(logits, tgt) + F.cross_entropy(logits.T, tgt)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
    return pi.eval(), pt.eval()


def matcher_rank_distance(matcher: Any, text: str, labels: np.ndarray) -> np.ndarray:
    """The label matcher's ranking as distances (its rank; items it does not match tie after all of them)."""
    match = matcher.match(text)
    pos, _sat, _ = matcher.rank(match, labels)
    d = np.full(len(labels), len(labels), np.int32)
    d[pos] = np.arange(len(pos), dtype=np.int32)
    return d


def matcher_outcome(found: list[str], relevant: list[list[str]]) -> str:
    """How the label matcher read a query of the list: "none" (no class), "right" (only classes of the query's
    groups, every group met) or "wrong"."""
    got = set(found)
    if not got:
        return "none"
    want = {c for grp in relevant for c in grp}
    return "right" if got <= want and all(set(g) & got for g in relevant) else "wrong"


def score_queries(dist: np.ndarray, rel: np.ndarray) -> dict[str, float]:
    """P@10 and mAP@20 (variants A and B) of one query's ranking (distance, then position) under ``rel``."""
    from rsir.eval import metrics as M

    order = M.rank(dist[None])
    r = rel[order]
    out = {"P@10": float(M.precision_at_k(r, 10)[0])}
    for v in ("A", "B"):
        out[f"mAP@20({v})"] = float(M.average_precision_at_k(r, 20, v)[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archive", required=True)
    ap.add_argument("--features", required=True)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--bits", default="16,32,64,128")
    ap.add_argument("--ablation-bits", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default="/tmp/rsir-duch-bench-cache")
    ap.add_argument("--queries", default=str(ROOT / "bench" / "text_queries.json"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "duch.json"))
    ap.add_argument("--skip-ablations", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from rsir.data.archive import open_archive
    from rsir.eval.crossmodal import evaluate_directions
    from rsir.methods.duch import DuchOptions, fit_duch, prepare, selection_slice
    from rsir.models.io import load_model
    from rsir.query.text import TextMatcher
    from rsir.text.sentences import shared_encoder

    t_start = time.perf_counter()
    a = open_archive(args.archive)
    feat, meta = load_model(args.features)
    base = DuchOptions(epochs=args.epochs, hidden=args.hidden, progress=True, cache_dir=args.cache)
    dev = torch.device("cpu")
    t0 = time.perf_counter()
    import hashlib

    tag = hashlib.sha256(f"{Path(args.archive).resolve()}|{Path(args.features).resolve()}".encode()).hexdigest()[:16]
    cached = Path(args.cache) / f"duch-data-{tag}.pt"
    if cached.is_file():  # the frozen inputs of an earlier run on the same archive and features
        train, test = torch.load(cached, weights_only=False)
    else:
        train = prepare(a, feat, meta.modality, [int(p) for p in a.split_positions("train")], base, dev)
        test = prepare(a, feat, meta.modality, [int(p) for p in a.split_positions("test")], base, dev,
                       augment=False)
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.save((train, test), cached)
    prep_s = time.perf_counter() - t0
    sel = selection_slice(train.ids, base.select_fraction, base.seed)
    test_pos = np.array([a.position(i) for i in test.ids])
    labels = np.asarray(a.labels)[test_pos]
    rows = np.arange(len(test.ids))
    queries = json.loads(Path(args.queries).read_text())["queries"]
    enc = shared_encoder()
    qvec = torch.from_numpy(enc.encode([q["text"] for q in queries]))
    classes = list(a.nomenclature.classes)
    qrel = []
    for q in queries:
        ok = np.ones(len(labels), bool)
        for grp in q["relevant"]:
            ok &= labels[:, [classes.index(c) for c in grp]].any(1)
        qrel.append(ok)
    matcher = TextMatcher(a.nomenclature)
    results: dict[str, Any] = {"runs": {}, "queries": {}}

    def run_eval(name: str, img_vec: np.ndarray, cap_vec: np.ndarray, qv: np.ndarray, metric: str,
                 extra: dict[str, Any]) -> None:
        t1 = time.perf_counter()
        res = evaluate_directions(["i2t", "t2i", "i2i", "t2t"], img_vec, labels, cap_vec, test.cap_item, rows, rows,
                                  True, (10, 20), metric=metric)
        from rsir.eval.protocols import distances

        dq = distances(qv, img_vec, metric)
        per = [score_queries(dq[j], qrel[j]) for j in range(len(queries))]
        results["runs"][name] = {**extra, "directions": res, "eval_s": round(time.perf_counter() - t1, 2)}
        results["queries"][name] = per
        partial = Path(args.out).with_suffix(".partial.json")  # what is done so far, if the run is cut short
        partial.write_text(json.dumps(results, indent=1))
        print(f"{name}: i2t mAP@20(B) {res['i2t']['mAP@20(B)']:.4f} t2i {res['t2i']['mAP@20(B)']:.4f} "
              f"mR {res['recall']['mR']:.4f}; query list P@10 {np.mean([p['P@10'] for p in per]):.4f}", flush=True)

    def duch_run(name: str, opts: DuchOptions) -> None:
        t1 = time.perf_counter()
        net, hist = fit_duch(train, opts, ~sel, sel)
        train_s = time.perf_counter() - t1
        with torch.inference_mode():
            img = _codes(net.image_head(test.img))
            cap = _codes(net.text_head(test.txt))
            qc = _codes(net.text_head(qvec))
        run_eval(name, img, cap, qc, "hamming",
                 {"bits": opts.bits, "alpha": opts.alpha, "beta": opts.beta, "gamma": opts.gamma,
                  "weights": list(opts.weights), "epochs": opts.epochs, "best_epoch": hist.best_epoch,
                  "selection_mR": hist.best_score, "train_s": round(train_s, 1),
                  "s_per_epoch": round(train_s / opts.epochs, 2)})

    for b in [int(x) for x in args.bits.split(",") if x.strip()]:
        duch_run(f"DUCH {b}", replace(base, bits=b))
    if not args.skip_ablations:
        k = args.ablation_bits
        duch_run(f"DUCH {k} no adversarial", replace(base, bits=k, alpha=0.0))
        duch_run(f"DUCH {k} no quantisation", replace(base, bits=k, beta=0.0))
        duch_run(f"DUCH {k} no intra-modal", replace(base, bits=k, weights=(1.0, 0.0, 0.0)))
    t1 = time.perf_counter()
    pi, pt = float_baseline(train, ~sel, args.epochs)
    with torch.inference_mode():
        fi = torch.nn.functional.normalize(pi(test.img), dim=1).numpy()
        ft = torch.nn.functional.normalize(pt(test.txt), dim=1).numpy()
        fq = torch.nn.functional.normalize(pt(qvec), dim=1).numpy()
    run_eval("float InfoNCE (256-d)", fi, ft, fq, "ip", {"epochs": args.epochs, "train_s": round(time.perf_counter()
                                                                                                 - t1, 1)})
    # the label matcher: text queries only (captions -> images, and the query list)
    from rsir.eval import metrics as M

    q_caps = np.arange(len(test.captions))
    rows_m = []
    for c in q_caps:
        d = matcher_rank_distance(matcher, test.captions[c], labels)
        d[test.cap_item[c]] = np.iinfo(np.int32).max  # leave the caption's own image out, as for DUCH
        own = np.array([test.cap_item[c]])
        rows_m.append(M.per_query_metrics(d[None], labels[test.cap_item[c]][None], labels, (10, 20), own))
    t2i = {k: float(np.mean([r[k][0] for r in rows_m])) for k in rows_m[0] if not k.startswith(("radius", "pk"))}
    per = [score_queries(matcher_rank_distance(matcher, q["text"], labels), qrel[j]) for j, q in enumerate(queries)]
    results["runs"]["label matcher"] = {"directions": {"t2i": t2i}}
    results["queries"]["label matcher"] = per
    found = [matcher_outcome(matcher.match(q["text"]).labels, q["relevant"]) for q in queries]
    results["matcher_outcome"] = found
    # hybrid: the product's routing (rsir.query.text.text_route, as rsir search --text / POST /api/search/text in
    # their default mode): the matcher when it finds a class, the DUCH codes otherwise
    from rsir.query.text import text_route

    route = [text_route(matcher.match(q["text"]), "hybrid", True) for q in queries]
    results["hybrid_route"] = route
    key = f"DUCH {args.ablation_bits}"
    if key in results["queries"]:
        results["queries"]["hybrid (matcher if it finds a class, else DUCH)"] = [
            results["queries"]["label matcher" if route[j] == "matcher" else key][j] for j in range(len(queries))]
    results["query_list"] = [{"group": q["group"], "text": q["text"], "matcher": found[j]}
                             for j, q in enumerate(queries)]
    results["meta"] = {
        "archive": str(a.path), "simulated": bool(a.manifest.get("info", {}).get("simulated")),
        "simulator": a.manifest.get("info", {}).get("simulator"), "features": str(args.features),
        "train_items": int((~sel).sum()), "selection_items": int(sel.sum()), "test_items": len(test.ids),
        "test_captions": len(test.captions), "hidden": args.hidden, "epochs": args.epochs,
        "protocol": "leave-own-out over the test split (captions in held-out wording); label relevance = any "
                    "shared label; caption-match recall among the test items",
        "prepare_s": round(prep_s, 1), "total_s": round(time.perf_counter() - t_start, 1),
        "machine": {"cpus": os.cpu_count(), "loadavg_end": list(os.getloadavg()), "torch_threads": args.threads},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
