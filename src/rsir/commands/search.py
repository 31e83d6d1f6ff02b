"""rsir search: query an INDEX directory by archive id, by an image file (.npz bands, GeoTIFF, PNG/JPEG) or by a
sentence (a text-image model's codes when the index has one, else the label matcher)."""

from __future__ import annotations

import argparse
import json
import sys

NAME = "search"
HELP = "search an index by an archive item id, an image file or a sentence and print the ranked results"
EXAMPLE = "rsir search indexes/reben-itq64 --id S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57 -k 10"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rsir.query.text import TEXT_MODES

    p.add_argument("index", help="INDEX directory (from rsir index)")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--id", help="an item id of the indexed archive")
    q.add_argument("--file", help="an image file: GeoTIFF (bands in order, or named by their descriptions), "
                                  ".npz (one array per band) or PNG/JPEG for RGB models")
    q.add_argument("--text", help="a sentence, e.g. 'flooded fields next to a river', answered as --mode says; "
                                  "a change index returns the pairs whose change it describes")
    q.add_argument("--pair", help="a bitemporal pair of a change index (its pair id or either image's id)")
    p.add_argument("--from", dest="from_", default=None, metavar="MODALITY",
                   help="cross-modal index: the query's modality, e.g. s1 (default: the index's own; for --file the "
                        "file's bands say)")
    p.add_argument("--target", default=None,
                   help="what the results are: for a cross-modal index their modality, e.g. s2 (default: the "
                        "query's); for a text-image (DUCH) index image (default) or text (the archive captions "
                        "nearest to --id or --text); with --pair (change index): text (sentences describing the "
                        "change, default) or pairs (similar changes)")
    p.add_argument("--mode", choices=TEXT_MODES, default="hybrid",
                   help="who answers --text: hybrid (default) the label matcher when it finds a class name or synonym "
                        "in the sentence, else the learned codes of the index's text-image (DUCH) model; learned: "
                        "always the learned codes; matcher: always the label matcher (an index without a text-image "
                        "model always uses the matcher, and says so)")
    p.add_argument("-k", type=int, default=10, help="number of results")
    p.add_argument("--offset", type=int, default=0, help="skip this many results (paging)")
    p.add_argument("--radius", type=int, default=None, metavar="R",
                   help="with --id: every item within Hamming distance R (paged by -k / --offset)")
    p.add_argument("--label", action="append", default=[], metavar="CLASS",
                   help="keep only results with this label (repeatable; any of them)")
    p.add_argument("--split", default=None, help="keep only results of this split")
    p.add_argument("--bbox", default=None, metavar="W,S,E,N",
                   help="keep only results whose footprint meets this WGS84 box (applied inside the search)")
    p.add_argument("--near", default=None, metavar="LON,LAT,KM",
                   help="keep only results whose centre is within KM kilometres of the point")
    p.add_argument("--season", choices=("winter", "spring", "summer", "autumn"), default=None,
                   help="keep only results acquired in this meteorological season (by hemisphere)")
    p.add_argument("--months", default=None, metavar="M,M,...", help="keep only results acquired in these months")
    p.add_argument("--date-from", default=None, metavar="YYYY-MM-DD", help="acquired on or after this date")
    p.add_argument("--date-to", default=None, metavar="YYYY-MM-DD", help="acquired on or before this date")
    p.add_argument("--archive", default=None, help="archive directory (default: the one recorded in the index)")
    p.add_argument("--json", action="store_true", help="print the results as JSON (the service's answer shape)")
    p.add_argument("--montage", metavar="PNG", default=None,
                   help="also write a picture of the query and its results (true-colour quicklooks with rank, "
                        "distance, id and labels; green frame: shares a label with the query, red: none)")
    p.add_argument("--montage-cols", type=int, default=6, metavar="N", help="tiles per row of the montage")
    p.add_argument("--format", choices=("table", "json", "geojson"), default=None,
                   help="table (default); json (as --json); geojson: a STAC ItemCollection (GeoJSON FeatureCollection "
                        "with each hit's footprint, datetime, rsir:distance and rsir:labels)")


def _floats(name: str, text: str | None, n: int | None) -> list[float] | None:
    """Comma-separated numbers of an option (None when not given); a one-line error otherwise."""
    from rsir.errors import RsirError

    if text is None:
        return None
    try:
        vals = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise RsirError(f"{name} {text!r}: expected comma-separated numbers") from None
    if n is not None and len(vals) != n:
        raise RsirError(f"{name} {text!r}: expected {n} comma-separated numbers, got {len(vals)}")
    return vals


def run(args: argparse.Namespace) -> int:
    from rsir.errors import RsirError
    from rsir.pipeline import IndexDir, is_change_index
    from rsir.query import Filters, SearchEngine

    if is_change_index(IndexDir.read_manifest(args.index)):
        return _change(args)
    if args.pair is not None:
        raise RsirError(f"--pair needs a change index (text-itsr); {args.index} indexes single images")
    engine = SearchEngine.open(args.index, archive=args.archive)
    filters = Filters(labels=args.label, split=args.split, bbox=_floats("--bbox", args.bbox, 4),
                      near=_floats("--near", args.near, 3), season=args.season,
                      months=[int(v) for v in _floats("--months", args.months, None) or []] or None,
                      date_from=args.date_from, date_to=args.date_to)
    target = None if args.target == "image" else args.target
    if args.target == "text":
        if args.file is not None:
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
        res, _match = engine.search_text(args.text, args.k, args.offset, filters, mode=args.mode)
        header = f"query text {args.text!r}  answered by: {res.query['answered']} ({res.query['why']})"
    elif args.id is not None:
        res = engine.search_id(args.id, args.k, args.offset, filters, from_=args.from_, target=target,
                               radius=args.radius)
        qlabels = res.query.get("labels") or []
        header = f"query {args.id}" + (f"  labels: {'; '.join(qlabels)}" if qlabels else "")
    else:
        if args.radius is not None:
            from rsir.query.items import QueryError

            raise QueryError("--radius needs --id (a search by image file ranks by k only)")
        res = engine.search_file(args.file, args.k, args.offset, filters, from_=args.from_, target=target)
        header = f"query file {args.file}"
    if res.direction:
        header += f"  ({res.direction})"
    if args.montage:
        from rsir.query.montage import results_montage
        from rsir.storage import atomic_write_bytes

        qrgb = None
        if args.file is not None:
            from rsir.data.bands import quicklook

            qrgb = quicklook(engine.parse(args.file, open(args.file, "rb").read()).bands)
        atomic_write_bytes(args.montage, results_montage(engine, res, qrgb, cols=max(1, args.montage_cols)))
        print(f"wrote {args.montage}", file=sys.stderr)
    fmt = args.format or ("json" if args.json else "table")
    if fmt == "json":
        print(json.dumps(res.to_json(), indent=2))
        return 0
    if fmt == "geojson":
        from rsir.query.geojson import item_collection

        print(json.dumps(item_collection(res, engine), indent=2))
        return 0
    print(header)
    if res.radius is not None:
        print(f"{res.within} items within Hamming distance {res.radius}")
    print(f"{'rank':>4}  {'distance':>9}  {'shares':>6}  id  labels")
    for h in res.hits:
        d = ("-" if h.distance is None else h.distance if isinstance(h.distance, int)
             else f"{h.distance:.4f}")
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
