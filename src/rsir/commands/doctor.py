"""rsir doctor: find (and with --fix remove) what interrupted writes left behind."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "doctor"
HELP = "list the hidden .NAME.partial-PID copies that killed ingests, index builds or trainings left; --fix removes them"
EXAMPLE = "rsir doctor archives indexes --fix"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="*", default=["."], metavar="FOLDER",
                   help="folders to look in, with their subfolders (default: the current folder)")
    p.add_argument("--depth", type=int, default=4, help="how many levels of subfolders to look in (default 4)")
    p.add_argument("--fix", action="store_true",
                   help="remove the leftovers whose writing process is gone (those of running processes stay); "
                        "without it the exit status is 1 when there are such leftovers")


def run(args: argparse.Namespace) -> int:
    from rsir.errors import RsirError
    from rsir.leftovers import Leftover, find_leftovers, human_size, remove

    if args.depth < 0:
        raise RsirError(f"--depth {args.depth}: must be 0 or more")
    found: list[Leftover] = []
    for f in args.folders:
        if not Path(f).is_dir():
            raise RsirError(f"{f}: not a folder")
        found.extend(find_leftovers(f, args.depth))
    if not found:
        print(f"no leftovers of interrupted writes in {', '.join(args.folders)}")
        return 0
    stale = [lo for lo in found if lo.stale]
    for lo in found:
        print(("removed " if args.fix and lo.stale else "") + lo.describe())
        if args.fix and lo.stale:
            remove(lo)
    size = human_size(sum(lo.size for lo in stale))
    if args.fix:
        print(f"removed {len(stale)} stale leftover(s), {size}; {len(found) - len(stale)} in use left alone")
        return 0
    print(f"{len(stale)} stale leftover(s), {size}" + (f": `rsir doctor {' '.join(args.folders)} --fix` removes "
                                                        f"them" if stale else ""))
    return 1 if stale else 0
