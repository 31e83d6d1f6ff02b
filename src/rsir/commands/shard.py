"""rsir shard: copy an archive with its tensor store split into several LMDB files (one catalog)."""

from __future__ import annotations

import argparse

NAME = "shard"
HELP = "copy an archive with its patches split into N LMDB files by position range (for workers on other machines)"
EXAMPLE = "rsir shard archives/reben --shards 8 --out /shared/reben-8"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("archive", help="archive directory")
    p.add_argument("--shards", type=int, required=True, metavar="N", help="number of LMDB files")
    p.add_argument("--out", required=True, help="the sharded archive to write")


def run(args: argparse.Namespace) -> int:
    from rsir.data.archive import open_archive
    from rsir.data.shards import shard_archive

    out = shard_archive(args.archive, args.out, args.shards)
    shards = open_archive(out).manifest["shards"]
    print(f"wrote {out}: {len(shards)} shards, " + ", ".join(f"{s['store']} [{s['start']}, {s['stop']})"
                                                            for s in shards))
    return 0
