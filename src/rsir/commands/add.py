"""rsir add: add the items of a source to an index offline, durably (the same journal as the service's adds)."""

from __future__ import annotations

import argparse

from rsir.commands import parse_options
from rsir.errors import RsirError

NAME = "add"
HELP = "add the items of a source (any ingest format) to an existing index, journaled like the service's adds"
EXAMPLE = "rsir add archives/reben indexes/reben-lsh64 new-patches/ --format geotiff"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rsir.data.formats import describe_formats

    p.add_argument("archive", help="archive directory the index was built from")
    p.add_argument("index", help="INDEX directory (from rsir index); its journal receives the adds")
    p.add_argument("source", help="file or folder to read the new items from")
    p.add_argument("--format", "-f", required=True, metavar="FORMAT",
                   help="source format: " + ", ".join(n for n, _ in describe_formats()))
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="format option (see rsir ingest --help)")
    p.add_argument("--model", default=None, help="model directory, when the index was built with a trained model")
    p.add_argument("--skip-bad", action="store_true", help="skip items that cannot be read, encoded or added")


def run(args: argparse.Namespace) -> int:
    from rsir.data.formats import open_source
    from rsir.query import SearchEngine

    engine = SearchEngine.open(args.index, archive=args.archive, model=args.model, durable=True)
    added, skipped = 0, 0
    try:
        src = open_source(args.source, args.format, parse_options(args.option))
        for item in src.items:
            try:
                arrays = item.load()
                if engine.modality not in arrays:
                    raise RsirError(f"item {item.id!r} has no {engine.modality} data (it has {', '.join(arrays)})")
                vec = engine.encode_bands(arrays[engine.modality])
                labels = [str(x) for x in item.meta.get("labels") or []]
                meta = {k: item.meta.get(k, "") for k in ("split", "country", "date", "lon", "lat")}
                engine.add_vector(item.id, vec, labels, {k: "" if v is None else v for k, v in meta.items()},
                                  arrays[engine.modality])
                added += 1
            except RsirError as e:
                if not args.skip_bad:
                    raise RsirError(f"{e} ({added} items were added and journaled before it)") from None
                skipped += 1
                print(f"rsir add: skipped {item.id}: {e}")
    finally:
        engine.close()
    print(f"added {added} items to {args.index} (journaled in {args.index}/journal.wal)"
          + (f", skipped {skipped}" if skipped else ""))
    return 0
