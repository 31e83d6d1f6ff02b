"""rsir compress: rewrite an archive with one modality stored as bitstreams of a joint codec (SCI-CBIR)."""

from __future__ import annotations

import argparse
from typing import Any

NAME = "compress"
HELP = "store an archive's patches as learned-codec bitstreams (indexable without decoding)"
EXAMPLE = "rsir compress archives/reben --codec models/codec64 --out archives/reben-c"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("archive", help="archive directory (from rsir ingest)")
    p.add_argument("--codec", required=True, help="codec directory (from rsir train-codec)")
    p.add_argument("--out", required=True, help="compressed archive directory to write")
    p.add_argument("--modality", default=None, help="modality to compress (default: the codec's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing archive at --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from rsir.compression.archive import compress_archive

    r = compress_archive(args.archive, args.codec, args.out, modality=args.modality, overwrite=args.overwrite,
                         progress=not args.no_progress)
    print(describe_compression(r))
    return 0


def describe_compression(r: Any) -> str:
    """One line on a CompressReport (rsir compress, rsir ingest --codec)."""
    return (f"compressed {r.n_items} items ({r.modality}): {r.raw_bytes / 1e6:.2f} MB of stored bands -> "
            f"{r.compressed_bytes / 1e6:.3f} MB of bitstreams ({r.ratio:.1f}x, {r.bpppb:.3f} bits per pixel per "
            f"band) -> {r.path}")
