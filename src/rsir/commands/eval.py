"""rsir eval: exact retrieval metrics of an index over an archive under a named protocol."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from rsir.errors import RsirError

NAME = "eval"
HELP = "evaluate an index on its archive: mAP@k (variants A/B/C), P/R@k, WAP, NDCG, RSiM P/R/F1, PR curves"
EXAMPLE = "rsir eval archives/reben indexes/reben-lsh64 --protocol loo --split test --k 10,20,100 --out eval/lsh64"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("archive", help="archive directory (labels and splits)")
    p.add_argument("index", help="index directory written by `rsir index` (database codes)")
    p.add_argument("--protocol", choices=("rsim", "loo"), default="loo",
                   help="rsim: validation queries against the test split; loo: leave-one-out over --split")
    p.add_argument("--split", default="test", help="split for --protocol loo (train, validation, test or all)")
    p.add_argument("--k", default="10,20,100", help="comma-separated cut-offs (default 10,20,100)")
    p.add_argument("--direction", default=None, metavar="Q->DB",
                   help="query and database modality, e.g. s1->s2 (default: the index's modality both ways)")
    p.add_argument("--query-index", default=None, metavar="DIR",
                   help="index directory holding the query modality's codes (cross-modal directions)")
    p.add_argument("--max-queries", type=int, default=None, help="evaluate at most N queries (quick run)")
    p.add_argument("--out", default=None, metavar="DIR", help="write eval.json, eval.md and plots here")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--codemap-points", type=int, default=1000, metavar="N",
                   help="with --out: draw a t-SNE map of at most N database codes (openTSNE, coloured by label) "
                        "beside the distance histograms of relevant and irrelevant pairs; 0 skips the map")


def _parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise RsirError(f"--k {text!r}: expected comma-separated positive integers, e.g. 10,20,100") from None
    if not ks or ks[0] < 1:
        raise RsirError(f"--k {text!r}: cut-offs must be positive integers")
    return ks


def _open(index_dir: str) -> Any:
    from rsir.pipeline import IndexDir

    if not Path(index_dir).is_dir():
        raise RsirError(f"{index_dir}: no index directory here")
    return IndexDir.open(index_dir)


def run(args: argparse.Namespace) -> int:
    from rsir.data.archive import open_archive
    from rsir.eval.protocols import ProtocolError, evaluate_full, parse_direction, split_queries
    from rsir.eval.report import format_table, write_report

    ks = _parse_ks(args.k)
    archive = open_archive(args.archive)
    db_search = _open(args.index)
    q_search = _open(args.query_index) if args.query_index else db_search
    db_mods = db_search.modalities
    if args.direction:
        try:
            q_mod, db_mod = parse_direction(args.direction)
        except ProtocolError as e:
            raise RsirError(str(e)) from None
    else:
        db_mod = db_mods[0] if db_mods else archive.primary_modality
        q_mod = q_search.modalities[0] if args.query_index else db_mod
    metric = str(db_search.index.metric)
    if q_search is not db_search and str(q_search.index.metric) != metric:
        raise RsirError(f"query index metric {q_search.index.metric} differs from database metric {metric}")
    try:
        split = split_queries(archive, args.protocol, args.split).limit(args.max_queries)
    except ProtocolError as e:
        raise RsirError(str(e)) from None
    n_ranked = len(split.db_pos) - (1 if split.exclude is not None else 0)
    over = [k for k in ks if k > n_ranked]
    warnings = []
    if over:
        warnings.append(f"k = {', '.join(map(str, over))} {'exceeds' if len(over) == 1 else 'exceed'} the "
                        f"{n_ranked} database items each query is ranked "
                        f"against: P@k counts the missing ranks as misses (P@{over[-1]} is at most "
                        f"{n_ranked / over[-1]:.2f}) and R@k, mAP@k see the whole ranking; choose --k up to "
                        f"{n_ranked}")
    for w in warnings:
        print(f"rsir eval: warning: {w}", file=sys.stderr)
    ids = archive.ids
    t0 = time.perf_counter()
    db_vecs = db_search.vectors([ids[p] for p in split.db_pos], db_mod)
    q_vecs = q_search.vectors([ids[p] for p in split.query_pos], q_mod)
    bits = int(db_search.index.dim) if metric == "hamming" else None
    try:
        res = evaluate_full(q_vecs, db_vecs, metric, archive.labels[split.query_pos], archive.labels[split.db_pos],
                            ks, split.exclude, bits=bits)
    except ProtocolError as e:
        raise RsirError(str(e)) from None
    seconds = time.perf_counter() - t0
    mf = db_search.manifest
    name = f"{db_search.method}" + (f"-{bits}bit" if bits else "") + f" {q_mod}->{db_mod}"
    print(f"protocol {args.protocol}: {res.n_queries} queries ({split.query_split}) against {res.n_db} items "
          f"({split.db_split}), {q_mod}->{db_mod}, {metric} distance"
          + (f", {bits} bits" if bits else "") + "; relevance = any shared label")
    print(format_table({name: res.metrics}, markdown=args.markdown))
    print(f"evaluated in {seconds:.2f} s")
    if args.out:
        meta = {"archive": str(archive.path), "index": str(args.index), "query_index": args.query_index,
                "protocol": args.protocol, "split": args.split if args.protocol == "loo" else None,
                "query_split": split.query_split, "db_split": split.db_split, "direction": f"{q_mod}->{db_mod}",
                "ks": ks, "max_queries": args.max_queries, "method": mf.get("method"), "bits": bits,
                "distance": metric, "seconds": round(seconds, 3), "warnings": warnings,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        paths = write_report(args.out, {name: res.to_json()}, meta)
        from rsir.query.codemap import write_code_pictures

        t1 = time.perf_counter()
        paths.update(write_code_pictures(
            args.out, db_vecs, archive.labels[split.db_pos], q_vecs, archive.labels[split.query_pos], metric,
            [ids[p] for p in split.db_pos], archive.nomenclature.classes, bits, max(0, args.codemap_points),
            split.exclude, name))
        if "codemap" in paths:
            print(f"code map: openTSNE of {min(len(db_vecs), args.codemap_points)} database codes "
                  f"in {time.perf_counter() - t1:.1f} s")
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
