"""rsir search: query an INDEX directory by archive id, by an image file (.npz bands, GeoTIFF, PNG/JPEG) or by a
sentence (a text-image model's codes when the index has one, else the label matcher)."""

from __future__ import annotations

import argparse
import json

NAME = "search"
HELP = "search an index by an archive item id, an image file or a sentence and print the ranked results"
EXAMPLE = "rsir search indexes/reben-itq64 --id S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57 -k 10"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index", help="INDEX directory (from rsir index)")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--id", help="an item id of the indexed archive")
    q.add_argument("--file", help="an image file: GeoTIFF (bands in order, or named by their descriptions), "
                                  ".npz (one array per band) or PNG/JPEG for RGB models")
    q.add_argument("--text", help="a sentence, e.g. 'flooded fields next to a river' (learned text-image codes when "
                                  "the index was built with a DUCH model, else the label matcher)")
    p.add_argument("--target", choices=["image", "text"], default="image",
                   help="what to return: images (default) or captions (--target text: the archive captions "
                        "nearest to the item or sentence; needs a text-image model)")
    p.add_argument("-k", type=int, default=10, help="number of results")
    p.add_argument("--offset", type=int, default=0, help="skip this many results (paging)")
    p.add_argument("--label", action="append", default=[], metavar="CLASS",
                   help="keep only results with this label (repeatable; any of them)")
    p.add_argument("--split", default=None, help="keep only results of this split")
    p.add_argument("--archive", default=None, help="archive directory (default: the one recorded in the index)")
    p.add_argument("--json", action="store_true", help="print the results as JSON (the service's answer shape)")


def run(args: argparse.Namespace) -> int:
    from rsir.query import Filters, SearchEngine

    engine = SearchEngine.open(args.index, archive=args.archive)
    filters = Filters(labels=args.label, split=args.split)
    if args.target == "text":
        if args.file is not None:
            from rsir.errors import RsirError

            raise RsirError("--target text works with --id or --text")
        caps = engine.nearest_captions(args.id, args.k + args.offset, args.text)[args.offset:]
        if args.json:
            print(json.dumps({"mode": "captions", "query": {"id": args.id, "text": args.text}, "results": caps},
                             indent=2))
            return 0
        print(f"captions nearest to {'item ' + args.id if args.id is not None else repr(args.text)} "
              f"(answered by {engine.text_model})")
        print(f"{'rank':>4}  {'distance':>8}  {'own':>3}  item  caption")
        for c in caps:
            print(f"{c['rank']:>4}  {c['distance']:>8}  {'yes' if c['own'] else '':>3}  {c['item_id']}  {c['caption']}")
        return 0
    if args.text is not None:
        res, _match = engine.search_text(args.text, args.k, args.offset, filters)
        who = res.query.get("answered_by")
        header = (f"query text {args.text!r}  answered by: "
                  + (f"{who} (learned text-image codes)" if res.mode == "text" else
                     "label matcher (this index has no text-image model"
                     + (f"; classes matched: {'; '.join(res.query.get('labels') or []) or 'none'})")))
    elif args.id is not None:
        res = engine.search_id(args.id, args.k, args.offset, filters)
        qlabels = res.query.get("labels") or []
        header = f"query {args.id}" + (f"  labels: {'; '.join(qlabels)}" if qlabels else "")
    else:
        res = engine.search_file(args.file, args.k, args.offset, filters)
        header = f"query file {args.file}"
    if args.json:
        print(json.dumps(res.to_json(), indent=2))
        return 0
    print(header)
    print(f"{'rank':>4}  {'distance':>9}  {'shares':>6}  id  labels")
    for h in res.hits:
        d = h.distance if isinstance(h.distance, int) or h.distance is None else f"{h.distance:.4f}"
        d = "-" if d is None else d
        share = "" if h.shares_label is None else ("yes" if h.shares_label else "no")
        print(f"{h.rank:>4}  {d:>9}  {share:>6}  {h.id}  {'; '.join(h.labels)}")
    if res.precision is not None:
        print(f"precision@{len(res.hits)} (shares >= 1 label with the query): {res.precision:.3f}")
    return 0
