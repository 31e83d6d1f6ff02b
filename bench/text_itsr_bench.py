"""text <-> bitemporal pair retrieval (text-ITSR, issue 15) on a SIMULATED archive: every GFF operator, TFF and the
single-date baseline, trained on the train split (model selection on a held-out slice of the training pairs),
evaluated on the test split, whose change captions use phrasings training never saw. R@1/5/10 in both directions
and mR, at the code length given and on float embeddings; training and encoding throughput.

About half of the pairs are unchanged (--unchanged, as in LEVIR-CC), half of those showing the outcome of an
earlier event at both dates. Besides all test pairs, the scores are split by the queries' kind: changed pairs and
their sentences as queries against the whole test set ("changed"), unchanged ones likewise ("unchanged"), and the
changed pairs alone as queries and database ("changed_only", the task of archives without unchanged pairs).

    python bench/text_itsr_bench.py --n 4300 --size 48 --epochs 100 --bits 64 --variants later,tff,gff-concat --out bench/results/text_itsr.json

(BENCHMARKS.md, "Search for change", has the commands of every result file.) Change captions come from
rsir.data.change_grammar; an archive in --work written by another grammar version or other settings is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsir.data.archive import open_archive
from rsir.data.change_grammar import GRAMMAR_VERSION, grammar_size
from rsir.data.simulate import SimConfig, simulate
from rsir.eval.recall import cross_modal_recalls
from rsir.methods.text_itsr import (
    ChangeOptions,
    embed_sentences,
    load_change_model,
    load_pair_images,
    pair_embeddings,
    text_embeddings,
    train_text_itsr,
    usable_pairs,
)
from rsir.storage import atomic_write_json
from rsir.train.loop import TrainConfig

VARIANTS = [("gff", "concat"), ("gff", "diff"), ("gff", "absdiff"), ("gff", "sum"), ("gff", "product"),
            ("tff", "concat"), ("later", "concat")]


def gaps(rows: dict[str, Any], bits: int) -> dict[str, float]:
    """mR points of the best bitemporal model over the single-date baseline, overall and per kind of query."""
    if "later" not in rows or len(rows) < 2:
        return {}
    keys = [f"{m}{s}" for m in ("float", f"{bits}bit") for s in ("", "_changed", "_unchanged", "_changed_only")]
    return {k: round(100 * (max(r[k]["mR"] for n, r in rows.items() if n != "later") - rows["later"][k]["mR"]), 2)
            for k in keys}


def probe_changed(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
                  ) -> dict[str, float]:
    """Does "a change happened" survive the frozen sentence encoder? A logistic regression on the frozen
    embeddings of the training captions (changed pair or not), scored on the evaluated captions."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(x_train.shape[1], 1)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train.astype(np.float32))

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(lin(xt)[:, 0], yt) + 1e-3 * lin.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        acc = [float(((lin(torch.from_numpy(x))[:, 0] > 0).numpy() == y).mean()) for x, y in
               ((x_train, y_train), (x_test, y_test))]
    return {"train_accuracy": round(acc[0], 3), "accuracy": round(acc[1], 3),
            "majority": round(float(max(y_test.mean(), 1 - y_test.mean())), 3)}


def merge(files: list[str], out: str) -> int:
    """One result file from runs over the same archive that trained different variants (--variants)."""
    runs = [json.loads(Path(f).read_text()) for f in files]
    if len({(r["dataset"], r["epochs"], r["bits"]) for r in runs}) != 1:
        raise SystemExit("merge: the runs differ in archive, epochs or bits")
    res = dict(runs[0])
    res["results"] = {k: v for r in runs for k, v in r["results"].items()}
    res["baseline_gap_mR_points"] = gaps(res["results"], res["bits"])
    res["merged_from"] = files
    atomic_write_json(out, res)
    print(json.dumps(res["baseline_gap_mR_points"], indent=1))
    return 0


def selection_curves(works: list[str], out: str) -> int:
    """The selection slice's mR after each epoch of the models trained in each --work folder, and the best epoch
    and mR within every 20 epochs: does a longer run still gain, and does the bitemporal models' lead grow with it?
    (No test pair is read.)"""
    res: dict[str, Any] = {}
    for w in works:
        runs = {}
        for path in sorted(Path(w).glob("model-*")):
            info = load_change_model(path)[1]
            curve = [round(float(h["select_mR"]), 4) for h in info["history"]]
            runs[path.name.removeprefix("model-")] = {
                "select_mR": curve,
                "best_within": {str(e): {"epoch": int(np.argmax(curve[:e])) + 1, "select_mR": max(curve[:e])}
                                for e in range(20, len(curve) + 1, 20)}}
        res[w] = runs
    atomic_write_json(out, res)
    for w, runs in res.items():
        for name, r in runs.items():
            print(w, name, {e: b["select_mR"] for e, b in r["best_within"].items()})
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1200)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--bitemporal", type=float, default=0.7)
    ap.add_argument("--unchanged", type=float, default=0.5)
    ap.add_argument("--after-event", type=float, default=0.5)
    ap.add_argument("--change-captions", type=int, default=5, help="change captions per pair")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="/tmp/rsir-text-itsr-bench")
    ap.add_argument("--out", default="bench/results/text_itsr.json")
    ap.add_argument("--variants", default="", help="comma-separated subset, e.g. gff-diff,later (default: all)")
    ap.add_argument("--split", default="test",
                    help="pairs to score (validation: unseen pairs described in training phrasings, a diagnostic)")
    ap.add_argument("--evaluate-only", action="store_true", help="score the models already trained in --work")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="merge these result files into --out and stop")
    ap.add_argument("--selection-curves", nargs="+", metavar="WORK",
                    help="write the selection-slice mR per epoch of the models in these --work folders to --out")
    args = ap.parse_args()
    if args.merge:
        return merge(args.merge, args.out)
    if args.selection_curves:
        return selection_curves(args.selection_curves, args.out)
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    arch_path = work / "archive"
    cfg = SimConfig(n=args.n, seed=args.seed, size=args.size, bitemporal=args.bitemporal, unchanged=args.unchanged,
                    after_event=args.after_event, difficulty="medium",
                    change_captions=args.change_captions)
    if not arch_path.exists():
        simulate(cfg, arch_path)
    arch = open_archive(arch_path)
    made = arch.manifest.get("info", {}).get("simulator", {})
    differ = [k for k in ("n", "seed", "size", "bitemporal", "unchanged", "after_event", "change_captions")
              if made.get(k) != getattr(cfg, k)]
    if arch.manifest.get("info", {}).get("change_grammar") != GRAMMAR_VERSION:
        differ.append("change_grammar")
    if differ:  # an archive of an earlier run with other settings (or of a simulator without unchanged pairs)
        raise SystemExit(f"{arch_path} was simulated with other settings ({', '.join(differ)}): use another --work")
    train_pairs = usable_pairs(arch, "s2", "train")
    train_list = [c for p in train_pairs for c in p.captions]  # the order train_text_itsr embeds (cache hit)
    train_changed = np.array([p.info.get("kind") != "none" for p in train_pairs for _ in p.captions])
    train_caps = set(train_list)
    test = usable_pairs(arch, "s2", args.split)
    caps = [c for p in test for c in p.captions]
    owner = np.repeat(np.arange(len(test)), [len(p.captions) for p in test])
    changed = np.array([p.info.get("kind") != "none" for p in test])
    lookalike = np.array([bool(p.info.get("prior")) for p in test])
    keep = np.flatnonzero(changed)
    sub_caps = np.isin(owner, keep)
    sub_owner = np.searchsorted(keep, owner[sub_caps])
    wording = {"change_grammar": GRAMMAR_VERSION, **grammar_size(), "distinct_train_captions": len(train_caps),
               f"distinct_{args.split}_captions": len(set(caps)),
               f"{args.split}_captions_seen_in_training": len(set(caps) & train_caps)}
    cache = str(work / "sentences")
    embed_sentences(["warm-up: load the sentence model before timing"])
    t0 = time.perf_counter()
    sent = embed_sentences(caps)
    sent_s = time.perf_counter() - t0
    wording["probe_changed"] = probe_changed(embed_sentences(train_list, cache), train_changed, sent, changed[owner])
    images = load_pair_images(arch, test, "s2")
    rows = {}
    wanted = set(filter(None, args.variants.split(",")))
    for fusion, op in VARIANTS:
        name = f"{fusion}-{op}" if fusion == "gff" else fusion
        if wanted and name not in wanted:
            continue
        t0 = time.perf_counter()
        path = work / f"model-{name}"
        if not args.evaluate_only:
            path = train_text_itsr(arch, path, TrainConfig(epochs=args.epochs, seed=args.seed, progress=False,
                                   patience=args.epochs), ChangeOptions(fusion, op, args.bits, sentence_cache=cache)).path
        train_s = time.perf_counter() - t0
        net, info = load_change_model(path)
        t0 = time.perf_counter()
        pe = pair_embeddings(net, images)
        enc_s = time.perf_counter() - t0
        te = text_embeddings(net, sent)
        row: dict[str, Any] = {}
        for metric, key in (("cosine", "float"), ("hamming", f"{args.bits}bit")):
            row[key] = cross_modal_recalls(pe, te, owner, metric)
            row[f"{key}_changed"] = cross_modal_recalls(pe, te, owner, metric, queries=changed)
            row[f"{key}_unchanged"] = cross_modal_recalls(pe, te, owner, metric, queries=~changed)
            row[f"{key}_changed_only"] = cross_modal_recalls(pe[keep], te[sub_caps], sub_owner, metric)
        row.update({"best_epoch": info["best_epoch"], "select_mR": info["select_mR"],
                    "training_pairs": info["training_pairs"]})
        if not args.evaluate_only:
            row.update({"train_seconds": round(train_s, 1),
                        "train_pairs_per_s": round(info["training_pairs"] * len(info["history"]) / train_s, 1)})
        row.update({"encode_pairs_per_s": round(len(test) / max(enc_s, 1e-9), 1),
                    "load_average": round(os.getloadavg()[0], 1)})
        rows[name] = row
        print(f"{name:>12}: mR float {100 * row['float']['mR']:.2f}, {args.bits} bits "
              f"{100 * row[f'{args.bits}bit']['mR']:.2f} (best epoch {row['best_epoch']}, {train_s:.0f} s)",
              flush=True)
    out = {"dataset": f"SIMULATED archive (rsir simulate --n {args.n} --size {args.size} --bitemporal "
                      f"{args.bitemporal} --unchanged {args.unchanged} --after-event {args.after_event} --change-captions {args.change_captions} "
                      f"--difficulty medium "
                      f"--seed {args.seed})",
           "machine": f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs, torch threads "
                      f"{args.threads}, CPU only",
           "split": args.split, "models": "trained earlier in --work" if args.evaluate_only else "trained here",
           "test_pairs": len(test), "test_changed_pairs": int(changed.sum()),
           "test_unchanged_pairs": int((~changed).sum()), "test_lookalike_pairs": int(lookalike.sum()),
           "test_sentences": len(caps), "epochs": args.epochs, "bits": args.bits,
           "sentence_encoding_per_s": round(len(caps) / max(sent_s, 1e-9), 1), "captions": wording,
           "baseline_gap_mR_points": gaps(rows, args.bits),
           "protocol": "train split minus a seeded 10% selection slice; test split (held-out phrasings) as "
                       "queries and database; R@K: share of queries with a relevant result in the top K; "
                       "_changed / _unchanged: only those pairs and their sentences as queries, against the whole "
                       "test set; _changed_only: the changed pairs alone as queries and database",
           "results": rows, "python": sys.version.split()[0], "torch": torch.__version__}
    atomic_write_json(args.out, out)
    print(json.dumps({k: v for k, v in out.items() if k != "results"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
