"""rsir ingest: read a source in one of the known formats and write an archive."""

from __future__ import annotations

import argparse
import sys

from rsir.commands import parse_options
from rsir.commands.compress import describe_compression

NAME = "ingest"
HELP = "read a source (reBEN LMDB, GeoTIFF folders, captions, ...) and write an rsir archive"
EXAMPLE = "rsir ingest ~/.cache/rsir/reben-sample --format reben --out archives/reben"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rsir.data.formats import describe_all_options, describe_formats

    p.add_argument("source", help="file or folder to read")
    p.add_argument("--format", "-f", required=True, metavar="FORMAT",
                   help="one of: " + "; ".join(f"{n} ({d})" for n, d in describe_formats()))
    p.add_argument("--out", "-o", required=True, help="archive directory to write")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="format option, repeatable; each format's options are listed below (an unknown key is "
                        "an error)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable items and report them")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing archive at --out (only an rsir archive or an empty folder)")
    p.add_argument("--limit", type=int, default=None, help="ingest at most N items")
    p.add_argument("--codec", default=None, metavar="MODEL",
                   help="store the codec's modality as bitstreams of this codec (from rsir train-codec): a "
                        "compressed archive, as rsir compress writes, without a raw copy first")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.epilog = ("format options (--option KEY=VALUE):\n" + describe_all_options() +
                "\n\nBands stored in another dtype than the archive's are converted exactly, float reflectances "
                "scaled\ninto reflectance*10000 modalities (noted in the manifest), or refused: nothing wraps. "
                "Hidden\n.NAME.partial-PID copies left by a killed ingest are removed on the next ingest to NAME "
                "(see rsir doctor).")


def run(args: argparse.Namespace) -> int:
    from rsir.data.formats import ingest

    def tell(kind: str, text: str) -> None:
        print(f"rsir ingest: {kind}: {text}", file=sys.stderr, flush=True)

    kw = {"skip_bad": args.skip_bad, "overwrite": args.overwrite, "progress": not args.quiet, "limit": args.limit,
          "tell": tell}
    if args.codec is not None:
        from rsir.compression.archive import ingest_with_codec

        rep = ingest_with_codec(args.source, args.format, args.out, args.codec, options=parse_options(args.option),
                                **kw)
    else:
        rep = ingest(args.source, args.format, args.out, parse_options(args.option), **kw)
    print(f"wrote {rep.n_items} items to {rep.path}")
    if rep.compressed is not None:
        print(describe_compression(rep.compressed))
    for c in rep.conversions:
        print(f"converted {c['modality']} band {c['band']} of {c['items']} items from {c['from']} to {c['to']}: "
              f"{c['rule']}")
    if rep.skipped:
        print(f"skipped {len(rep.skipped)} bad items:")
        for item, problem in rep.skipped:
            print(f"  {item}: {problem}")
    return 0
