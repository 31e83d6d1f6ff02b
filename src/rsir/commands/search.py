"""rsir search: query an INDEX directory by archive id or by an image file (.npz bands, GeoTIFF, PNG/JPEG)."""

from __future__ import annotations

import argparse
import json
import sys

NAME = "search"
HELP = "search an index by an archive item id or an image file and print the ranked results"
EXAMPLE = "rsir search indexes/reben-itq64 --id S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57 -k 10"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index", help="INDEX directory (from rsir index)")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--id", help="an item id of the indexed archive")
    q.add_argument("--text", help="a sentence (matched against the class names until a text-image model exists)")
    q.add_argument("--file", help="an image file: GeoTIFF (bands in order, or named by their descriptions), "
                                  ".npz (one array per band) or PNG/JPEG for RGB models")
    p.add_argument("-k", type=int, default=10, help="number of results")
    p.add_argument("--offset", type=int, default=0, help="skip this many results (paging)")
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
    from rsir.query import Filters, SearchEngine

    engine = SearchEngine.open(args.index, archive=args.archive)
    filters = Filters(labels=args.label, split=args.split, bbox=_floats("--bbox", args.bbox, 4),
                      near=_floats("--near", args.near, 3), season=args.season,
                      months=[int(v) for v in _floats("--months", args.months, None) or []] or None,
                      date_from=args.date_from, date_to=args.date_to)
    if args.text is not None:
        res, _ = engine.search_text(args.text, args.k, args.offset, filters)
        header = f"query text {args.text!r}  classes: {'; '.join(res.query.get('labels') or []) or 'none found'}"
    elif args.id is not None:
        res = engine.search_id(args.id, args.k, args.offset, filters)
        qlabels = res.query.get("labels") or []
        header = f"query {args.id}" + (f"  labels: {'; '.join(qlabels)}" if qlabels else "")
    else:
        res = engine.search_file(args.file, args.k, args.offset, filters)
        header = f"query file {args.file}"
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
    print(f"{'rank':>4}  {'distance':>9}  {'shares':>6}  id  labels")
    for h in res.hits:
        d = ("-" if h.distance is None else h.distance if isinstance(h.distance, int)
             else f"{h.distance:.4f}")
        share = "" if h.shares_label is None else ("yes" if h.shares_label else "no")
        print(f"{h.rank:>4}  {d:>9}  {share:>6}  {h.id}  {'; '.join(h.labels)}")
    if res.precision is not None:
        print(f"precision@{len(res.hits)} (shares >= 1 label with the query): {res.precision:.3f}")
    return 0
