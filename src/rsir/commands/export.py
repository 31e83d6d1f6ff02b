"""rsir export: write an archive's catalog in a format other tools open (a static STAC catalog)."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "export an archive as a static STAC catalog (items with geometry, datetime, labels; thumbnails or COGs)"
EXAMPLE = "rsir export archives/reben --stac stac/reben --assets cog"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("archive", help="archive directory")
    p.add_argument("--stac", required=True, metavar="DIR", help="write a static STAC 1.1 catalog here")
    p.add_argument("--assets", choices=("thumbnail", "cog", "none"), default="thumbnail",
                   help="thumbnail: a PNG quicklook per item (default); cog: also one Cloud-Optimized GeoTIFF per "
                        "band, so the catalog can be ingested again; none: metadata only")
    p.add_argument("--collection", default=None, help="collection id (default: the archive folder's name)")
    p.add_argument("--limit", type=int, default=None, help="export the first N items only")
    p.add_argument("--overwrite", action="store_true", help="replace an existing catalog folder")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rsir.data.archive import open_archive
    from rsir.data.stac_export import export_stac

    archive = open_archive(args.archive)
    n = len(archive) if args.limit is None else min(args.limit, len(archive))
    with tqdm(total=n, desc="export stac", unit="item", dynamic_ncols=True) as bar:
        path = export_stac(archive, args.stac, args.assets, args.overwrite, args.limit, args.collection,
                           progress=lambda i, _n: bar.update(i - bar.n))
    print(f"wrote a STAC catalog of {n} items to {path}")
    return 0
