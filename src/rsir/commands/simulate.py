"""rsir simulate: write a labelled, simulated Sentinel-2/Sentinel-1 archive of any size (tests, benchmarks, demos)."""

from __future__ import annotations

import argparse

NAME = "simulate"
HELP = "write a simulated archive of labelled Sentinel-2/Sentinel-1 patch pairs (reBEN layout, 19 classes)"
EXAMPLE = "rsir simulate --n 2000 --out archives/sim --difficulty hard --seed 0"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, required=True, help="number of primary items (partners come on top)")
    p.add_argument("--out", "-o", required=True, help="archive directory to write")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed: byte-identical archive)")
    p.add_argument("--difficulty", default="medium", choices=["easy", "medium", "hard"],
                   help="how much the class spectra vary and overlap (default: medium)")
    p.add_argument("--size", type=int, default=120, help="patch size in 10 m pixels, a multiple of 6 (default 120)")
    p.add_argument("--clouds", type=float, default=0.0, help="probability that a patch has clouds (default 0)")
    p.add_argument("--bitemporal", type=float, default=0.1,
                   help="share of items that get a later partner '<id>_t2' with land-cover changes (default 0.1)")
    p.add_argument("--unchanged", type=float, default=0.5,
                   help="share of those partners without a change between the dates, as in LEVIR-CC (default 0.5;"
                        " 0: every pair changes, as in archives written before this option)")
    p.add_argument("--after-event", type=float, default=0.5,
                   help="share of the unchanged pairs that show at both dates the outcome of an earlier change "
                        "(default 0.5)")
    p.add_argument("--change-captions", type=int, default=5,
                   help="change captions per bitemporal pair, as in LEVIR-CC (default 5; test-split pairs get "
                        "held-out wording)")
    p.add_argument("--label-threshold", type=float, default=0.05,
                   help="minimum share of the patch for a class to be a label (default 0.05)")
    p.add_argument("--workers", type=int, default=0, help="generator processes (0: one per CPU)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing archive at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import time

    from rsir.data.simulate import SimConfig, simulate

    cfg = SimConfig(n=args.n, seed=args.seed, difficulty=args.difficulty, size=args.size, clouds=args.clouds,
                    bitemporal=args.bitemporal, unchanged=args.unchanged, after_event=args.after_event,
                    change_captions=args.change_captions, label_threshold=args.label_threshold, workers=args.workers)
    t0 = time.perf_counter()
    path = simulate(cfg, args.out, overwrite=args.overwrite, progress=not args.quiet)
    from rsir.data.archive import open_archive

    n = len(open_archive(path))
    dt = time.perf_counter() - t0
    print(f"wrote {n} simulated items ({cfg.n} primary + {n - cfg.n} bitemporal partners) to {path} "
          f"in {dt:.1f} s")
    return 0
