"""rsir search: query an INDEX directory by archive id or by an image file (.npz bands or GeoTIFF)."""

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
    q.add_argument("--file", help="an image file: .npz (one array per band) or GeoTIFF (bands in order)")
    p.add_argument("-k", type=int, default=10, help="number of results")
    p.add_argument("--archive", default=None, help="archive directory (default: the one recorded in the index)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    from rsir.search import Searcher

    s = Searcher.open(args.index, archive=args.archive)
    if args.id is not None:
        results = s.search_id(args.id, args.k)
        qlabels = s._labels(args.id)
        header = f"query {args.id}" + (f"  labels: {'; '.join(qlabels)}" if qlabels else "")
    else:
        results = s.search_file(args.file, args.k)
        qlabels = None
        header = f"query file {args.file}"
    if args.json:
        print(json.dumps({"query": args.id or args.file, "query_labels": qlabels, "results": results}, indent=2))
        return 0
    print(header)
    print(f"{'rank':>4}  {'distance':>9}  {'shares':>6}  id  labels")
    for r in results:
        d = r["distance"] if isinstance(r["distance"], int) else f"{r['distance']:.4f}"
        share = "" if r["shares_label"] is None else ("yes" if r["shares_label"] else "no")
        print(f"{r['rank']:>4}  {d:>9}  {share:>6}  {r['id']}  {'; '.join(r['labels'] or [])}")
    known = [r["shares_label"] for r in results if r["shares_label"] is not None]
    if known:
        print(f"precision@{len(results)} (shares >= 1 label with the query): {sum(known) / len(known):.3f}")
    return 0
