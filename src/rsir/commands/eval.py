"""rsir eval: exact retrieval metrics of an index over an archive under a named protocol."""

from __future__ import annotations

import argparse
import contextlib
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
    p.add_argument("--directions", default=None, metavar="LIST",
                   help="several directions in one table: s1-s2,s2-s1,s1-s1,s2-s2 for a cross-modal image index "
                        "(its default: every pair of its modalities); i2t,t2i,i2i,t2t for a text-image (DUCH) index "
                        "(label relevance, plus caption-match R@1/5/10 and mR); t2p,p2t for a change index "
                        "(its default)")
    p.add_argument("--split-list", action="append", default=[], metavar="[SPLIT=]FILE",
                   help="patch-name list (CSV, first column the S2 name, e.g. the BigEarthNet-MM 'Serbia summer' "
                        "lists) replacing the archive's splits; repeat for validation and test "
                        "(validation=val.csv test=test.csv)")
    p.add_argument("--query-index", default=None, metavar="DIR",
                   help="index directory holding the query modality's codes (cross-modal directions)")
    p.add_argument("--max-queries", type=int, default=None, help="evaluate at most N queries (quick run)")
    p.add_argument("--dask", default=None, metavar="local:N|ADDRESS",
                   help="rank the queries on a Dask cluster (local:N worker processes started here, or a scheduler "
                        "address); the metrics are the same as without it")
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
    from rsir.eval.protocols import ProtocolError, directions, evaluate_full, parse_direction, split_queries
    from rsir.eval.report import format_table, write_report
    from rsir.pipeline import IndexDir, is_change_index

    if Path(args.index).is_dir() and is_change_index(IndexDir.read_manifest(args.index)):
        return _change_eval(args)
    ks = _parse_ks(args.k)
    archive = open_archive(args.archive)
    split_lists = None
    if args.split_list:
        from rsir.data.splitlists import apply_split_lists

        split_lists = apply_split_lists(archive, args.split_list)
        print("split lists: " + ", ".join(f"{s} {n}" for s, n in split_lists["counts"].items())
              + (f" ({split_lists['unmatched']} listed names not in the archive)" if split_lists["unmatched"]
                 else ""))
    db_search = _open(args.index)
    q_search = _open(args.query_index) if args.query_index else db_search
    db_mods = db_search.modalities
    text_dirs = {"i2t", "t2i", "i2i", "t2t"}
    if args.directions and {d.strip() for d in args.directions.split(",") if d.strip()} <= text_dirs:
        try:
            split = split_queries(archive, args.protocol, args.split).limit(args.max_queries)
        except ProtocolError as e:
            raise RsirError(str(e)) from None
        return _run_directions(args, archive, db_search, split, ks)
    try:
        if args.directions:
            dirs = [parse_direction(d) for d in args.directions.split(",") if d.strip()]
        elif args.direction:
            dirs = [parse_direction(args.direction)]
        elif len(db_mods) > 1 and not args.query_index:
            dirs = directions(db_mods)
        else:
            db_mod = db_mods[0] if db_mods else archive.primary_modality
            dirs = [(q_search.modalities[0] if args.query_index else db_mod, db_mod)]
    except ProtocolError as e:
        raise RsirError(str(e)) from None
    if not dirs:
        raise RsirError(f"--directions {args.directions!r}: no direction given (e.g. s1-s2,s2-s1)")
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
    bits = int(db_search.index.dim) if metric == "hamming" else None
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        run_blocks = None
        if args.dask:
            from rsir.scale import open_client
            from rsir.scale.evaluate import dask_blocks

            run_blocks = dask_blocks(stack.enter_context(open_client(args.dask)))
        for q_mod, db_mod in dirs:
            db_vecs = db_search.vectors([ids[p] for p in split.db_pos], db_mod)
            q_vecs = q_search.vectors([ids[p] for p in split.query_pos], q_mod)
            try:
                res = evaluate_full(q_vecs, db_vecs, metric, archive.labels[split.query_pos],
                                    archive.labels[split.db_pos], ks, split.exclude, bits=bits,
                                    run_blocks=run_blocks)
            except ProtocolError as e:
                raise RsirError(str(e)) from None
            results[f"{db_search.method}" + (f"-{bits}bit" if bits else "") + f" {q_mod}->{db_mod}"] = res
    seconds = time.perf_counter() - t0
    mf = db_search.manifest
    shown = ", ".join(f"{q}->{d}" for q, d in dirs)
    print(f"protocol {args.protocol}: {res.n_queries} queries ({split.query_split}) against {res.n_db} items "
          f"({split.db_split}), {shown}, {metric} distance"
          + (f", {bits} bits" if bits else "") + "; relevance = any shared label"
          + ("; a query's own partner is left out of cross-modal rankings too" if split.exclude is not None
             and any(q != d for q, d in dirs) else ""))
    print(format_table({n: r.metrics for n, r in results.items()}, markdown=args.markdown))
    print(f"evaluated in {seconds:.2f} s")
    if args.out:
        meta = {"archive": str(archive.path), "index": str(args.index), "query_index": args.query_index,
                "protocol": args.protocol, "split": args.split if args.protocol == "loo" else None,
                "query_split": split.query_split, "db_split": split.db_split,
                "direction": f"{dirs[0][0]}->{dirs[0][1]}" if len(dirs) == 1 else None,
                "directions": [f"{q}->{d}" for q, d in dirs],
                "ks": ks, "max_queries": args.max_queries, "split_lists": split_lists, "method": mf.get("method"), "bits": bits,
                "distance": metric, "seconds": round(seconds, 3), "warnings": warnings,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        paths = write_report(args.out, {n: r.to_json() for n, r in results.items()}, meta)
        from rsir.query.codemap import write_code_pictures

        # the code map and distance histograms of the last direction evaluated (the only one, usually)
        name = list(results)[-1]
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


def _change_eval(args: argparse.Namespace) -> int:
    """Text <-> bitemporal pair retrieval on one split: R@1/5/10 per direction and mR, on the index's codes
    (Hamming, ties in index order) and on the model's float embeddings (cosine)."""
    import numpy as np

    from rsir.bits import unpack_bits
    from rsir.eval.recall import cross_modal_recalls
    from rsir.query.change import ChangeEngine
    from rsir.storage import atomic_write_json

    dirs = [d.strip() for d in (args.directions or "t2p,p2t").split(",") if d.strip()]
    bad = [d for d in dirs if d not in ("t2p", "p2t")]
    if bad or not dirs:
        raise RsirError(f"--directions {args.directions!r}: a change index answers t2p and p2t")
    eng = ChangeEngine.open(args.index, archive=args.archive)
    split = None if args.split == "all" else args.split
    pairs = [p for p in eng.pairs.values() if (split is None or p.split == split) and p.captions]
    pairs.sort(key=lambda p: p.before_pos)
    if args.max_queries:
        pairs = pairs[:args.max_queries]
    if len(pairs) < 2:
        raise RsirError(f"{args.index}: {len(pairs)} captioned pairs in split {args.split!r}; choose --split "
                        f"({', '.join(sorted({p.split for p in eng.pairs.values()}))} or all)")
    t0 = time.perf_counter()
    ids = np.array([p.pair_id for p in pairs], dtype=object)
    cap_ids = np.array([f"{p.pair_id}#{j}" for p in pairs for j in range(len(p.captions))], dtype=object)
    owner = np.repeat(np.arange(len(pairs)), [len(p.captions) for p in pairs])
    bits = int(eng.pairs_index.dim)
    pc = unpack_bits(np.asarray(eng.pairs_index.get(ids)), bits).astype(np.float32) * 2 - 1
    tc = unpack_bits(np.asarray(eng.text_index.get(cap_ids)), bits).astype(np.float32) * 2 - 1
    rows = {f"{eng.method} {bits} bits": cross_modal_recalls(pc, tc, owner, "hamming", dirs)}
    mod = eng.encoder.modality
    stacked = np.stack([np.concatenate([eng.archive.image(p.before_pos, mod), eng.archive.image(p.after_pos, mod)])
                        for p in pairs])
    pe = eng.encoder.embed_pairs(stacked)
    te = eng.encoder.embed_text([c for p in pairs for c in p.captions])
    rows[f"{eng.method} float"] = cross_modal_recalls(pe, te, owner, "cosine", dirs)
    seconds = time.perf_counter() - t0
    cols = [f"{d}_R@{k}" for d in dirs for k in (1, 5, 10)] + ["mR"]
    print(f"text <-> bitemporal pairs, split {args.split}: {len(pairs)} pairs, {len(owner)} sentences; "
          "R@K = share of queries with a relevant result in the top K (sentence -> its pair; pair -> any of its "
          "sentences), mR = mean of the R@K shown")
    width = max(len(n) for n in rows) + 2
    print(f"{'':<{width}}" + "".join(f"{c:>10}" for c in cols))
    for name, r in rows.items():
        print(f"{name:<{width}}" + "".join(f"{100 * r[c]:>10.2f}" for c in cols))
    print(f"evaluated in {seconds:.2f} s")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "eval.json", {"archive": str(eng.archive.path), "index": str(args.index),
                                              "split": args.split, "pairs": len(pairs), "sentences": len(owner),
                                              "directions": dirs, "results": rows, "seconds": round(seconds, 3),
                                              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        print(f"wrote {out / 'eval.json'}")
    return 0


def _run_directions(args: argparse.Namespace, archive: Any, index: Any, split: Any, ks: list[int]) -> int:
    """rsir eval --directions: the text <-> image directions of a text-image index (rsir.eval.crossmodal)."""
    import numpy as np

    from rsir.eval.crossmodal import evaluate_directions, parse_directions
    from rsir.eval.report import format_table, write_json

    try:
        dirs = parse_directions(args.directions)
    except ValueError as e:
        raise RsirError(str(e)) from None
    if not index.manifest.get("text"):
        raise RsirError(f"{args.index}: holds no caption codes (build it with rsir index --model DUCH_MODEL); "
                        "--directions needs a text-image index")
    t0 = time.perf_counter()
    cidx, rows = index.caption_index()
    rows_needed = np.union1d(split.query_pos, split.db_pos)
    ids = [archive.ids[p] for p in rows_needed]
    local = {i: j for j, i in enumerate(ids)}
    keep = [r for r in rows if r[1] in local]
    img = index.vectors(ids)
    caps = np.asarray(cidx.get(np.array([r[0] for r in keep], dtype=object)))
    cap_item = np.array([local[r[1]] for r in keep], dtype=np.int64)
    where = {int(p): j for j, p in enumerate(rows_needed)}
    q_rows = np.array([where[int(p)] for p in split.query_pos], dtype=np.int64)
    d_rows = np.array([where[int(p)] for p in split.db_pos], dtype=np.int64)
    bits = int(index.index.dim)
    res = evaluate_directions(dirs, img, archive.labels[rows_needed], caps, cap_item, q_rows, d_rows,
                              split.exclude is not None, ks, bits)
    seconds = time.perf_counter() - t0
    name = f"{index.method}-{bits}bit"
    print(f"protocol {args.protocol}: {res['n_queries']['items']} query items ({res['n_queries']['captions']} "
          f"captions, {split.query_split}) against {res['n_db']['items']} items ({res['n_db']['captions']} "
          f"captions, {split.db_split}); Hamming distance, {bits} bits; relevance = any shared label"
          + ("; a query's own pair is left out" if split.exclude is not None else ""))
    print(format_table({f"{name} {d}": res[d] for d in dirs}, markdown=args.markdown))
    rec = res["recall"]
    print("caption match (query items and their own captions): "
          + ", ".join(f"{k} {v:.4f}" for k, v in rec.items()))
    print(f"evaluated in {seconds:.2f} s")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"archive": str(archive.path), "index": str(args.index), "protocol": args.protocol,
                "query_split": split.query_split, "db_split": split.db_split, "directions": dirs, "ks": ks,
                "bits": bits, "method": index.method, "seconds": round(seconds, 3),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        path = write_json(out / "eval.json", {"meta": meta, "results": res})
        print(f"wrote {path}")
    return 0
