"""rsir search: query an INDEX directory by archive id or by an image file (.npz bands, GeoTIFF, PNG/JPEG)."""

from __future__ import annotations

import argparse
import json

NAME = "search"
HELP = "search an index by an archive item id or an image file and print the ranked results"
EXAMPLE = "rsir search indexes/reben-itq64 --id S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57 -k 10"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index", help="INDEX directory (from rsir index)")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--id", help="an item id of the indexed archive")
    q.add_argument("--file", help="an image file: GeoTIFF (bands in order, or named by their descriptions), "
                                  ".npz (one array per band) or PNG/JPEG for RGB models")
    q.add_argument("--text", help="a sentence (a change index returns the pairs whose change it describes)")
    q.add_argument("--pair", help="a bitemporal pair of a change index (its pair id or either image's id)")
    p.add_argument("--from", dest="from_", default=None, metavar="MODALITY",
                   help="cross-modal index: the query's modality, e.g. s1 (default: the index's own; for --file the "
                        "file's bands say)")
    p.add_argument("--target", default=None,
                   help="what the results are: for a cross-modal index their modality, e.g. s2 (default: the "
                        "query's); with --pair text (sentences describing the change, default) or pairs")
    p.add_argument("-k", type=int, default=10, help="number of results")
    p.add_argument("--offset", type=int, default=0, help="skip this many results (paging)")
    p.add_argument("--label", action="append", default=[], metavar="CLASS",
                   help="keep only results with this label (repeatable; any of them)")
    p.add_argument("--split", default=None, help="keep only results of this split")
    p.add_argument("--archive", default=None, help="archive directory (default: the one recorded in the index)")
    p.add_argument("--json", action="store_true", help="print the results as JSON (the service's answer shape)")


def run(args: argparse.Namespace) -> int:
    from rsir.errors import RsirError
    from rsir.pipeline import IndexDir, is_change_index
    from rsir.query import Filters, SearchEngine

    if is_change_index(IndexDir.read_manifest(args.index)):
        return _change(args)
    if args.pair is not None:
        raise RsirError(f"--pair needs a change index (text-itsr); {args.index} indexes single images")
    engine = SearchEngine.open(args.index, archive=args.archive)
    filters = Filters(labels=args.label, split=args.split)
    if args.id is not None:
        res = engine.search_id(args.id, args.k, args.offset, filters, from_=args.from_, target=args.target)
        qlabels = res.query.get("labels") or []
        header = f"query {args.id}" + (f"  labels: {'; '.join(qlabels)}" if qlabels else "")
    elif args.text is not None:
        res, match = engine.search_text(args.text, args.k, args.offset, filters)
        header = f"query text {args.text!r} (label matcher: {'; '.join(match.labels) or 'no class recognised'})"
    else:
        res = engine.search_file(args.file, args.k, args.offset, filters, from_=args.from_, target=args.target)
        header = f"query file {args.file}"
    if res.direction:
        header += f"  ({res.direction})"
    if args.json:
        print(json.dumps(res.to_json(), indent=2))
        return 0
    print(header)
    print(f"{'rank':>4}  {'distance':>9}  {'shares':>6}  id  labels")
    for h in res.hits:
        d = h.distance if isinstance(h.distance, int) else f"{h.distance:.4f}"
        share = "" if h.shares_label is None else ("yes" if h.shares_label else "no")
        print(f"{h.rank:>4}  {d:>9}  {share:>6}  {h.id}  {'; '.join(h.labels)}")
    if res.precision is not None:
        print(f"precision@{len(res.hits)} (shares >= 1 label with the query): {res.precision:.3f}")
    return 0


def _change(args: argparse.Namespace) -> int:
    """Search a change index: --text finds pairs, --pair finds sentences (or similar pairs)."""
    from rsir.errors import RsirError
    from rsir.query.change import ChangeEngine

    engine = ChangeEngine.open(args.index, archive=args.archive)
    if args.text is not None:
        res = engine.search_text(args.text, args.k, args.offset, args.split)
        header = f"query text {args.text!r} -> bitemporal pairs ({engine.method})"
    elif args.pair is not None:
        target = args.target or "text"
        res = engine.search_pair(args.pair, args.k, args.offset, target, args.split)
        p = res.query["pair"]
        header = (f"query pair {p['pair_id']} ({p['before_date']} -> {p['after_date']}) -> "
                  f"{'sentences' if target == 'text' else 'pairs'} ({engine.method})")
    else:
        raise RsirError(f"{args.index} is a change index: query it with --text or --pair")
    if args.json:
        print(json.dumps(res.to_json(), indent=2))
        return 0
    print(header)
    for h in res.hits:
        it = h.item
        if "text" in it:
            print(f"{h.rank:>4}  {h.distance:>4}  {it['text']}  (pair {it['pair_id']}, {it['split']})")
        else:
            cap = it["captions"][0] if it["captions"] else ""
            print(f"{h.rank:>4}  {h.distance:>4}  {it['pair_id']}  {it['before_date']} -> {it['after_date']}  "
                  f"{it['split']}  \"{cap}\"")
    return 0
