"""The main job behind `make demo`: obtain the real reBEN sample, ingest it and a simulated archive, summarise.

Later stages (train, index, evaluate, serve) are added here as they land, each printed as a numbered step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rsir.errors import RsirError


def step(n: int, text: str) -> None:
    print(f"\n=== [{n}] {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rsir.demo", description=__doc__)
    ap.add_argument("--out", default="demo-out", help="working directory for archives, models and indexes")
    ap.add_argument("--n-sim", type=int, default=2000, help="patch pairs in the simulated archive")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from rsir.commands.info import format_summary
    from rsir.data.archive import open_archive
    from rsir.data.fetch import get_dataset
    from rsir.data.formats import ingest

    try:
        step(1, "obtain the real reBEN sample (24 Sentinel-2/Sentinel-1 pairs) from its PyPI distribution")
        src = get_dataset("reben-sample")
        print(f"reBEN sample at {src}")
        step(2, "ingest it")
        rep = ingest(src, "reben", out / "reben", overwrite=True)
        print(format_summary(open_archive(rep.path).summary()))
        step(3, f"simulate an archive of {args.n_sim} labelled Sentinel-2/Sentinel-1 pairs")
        from rsir.data.simulate import SimConfig, simulate

        sim = simulate(SimConfig(n=args.n_sim, seed=0, difficulty="hard"), out / "sim", overwrite=True)
        print(format_summary(open_archive(sim).summary()))
    except RsirError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
