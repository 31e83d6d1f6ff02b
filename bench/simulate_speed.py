"""Benchmark of the simulator: items per second writing a simulated archive, and where the time goes.

Writes bench/results/simulate.json. The headline figure is the wall time of ``rsir.data.simulate.simulate``
end to end (generation in worker processes + ArchiveWriter in the main process + close). ArchiveWriter.add and
.close are wrapped with timers (no change to their behaviour) to split the main process's time into writing,
closing and waiting for the generators; a short single-process run measures the generation cost per item.
Data: simulated (no real data is read).

usage: .venv/bin/python bench/simulate_speed.py [--n 10000] [--workers 2] [--size 120] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from rsir.data import archive as archive_mod
from rsir.data.bands import s1_spec, s2_spec
from rsir.data.nomenclature import BEN19
from rsir.data.simulate import SimConfig, generate_block, n_blocks, simulate


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _du_bytes(path: Path) -> int:
    try:
        return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
                   .stdout.split()[0])
    except (OSError, subprocess.CalledProcessError, ValueError):
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=120)
    ap.add_argument("--difficulty", default="hard")
    ap.add_argument("--bitemporal", type=float, default=0.1)
    ap.add_argument("--out", default=None, help="archive path (default: a temporary directory, deleted)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--results", default=str(Path(__file__).parent / "results" / "simulate.json"))
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rsir-simbench-"))
    out = Path(args.out) if args.out else tmp / "sim"
    cfg = SimConfig(n=args.n, seed=0, difficulty=args.difficulty, size=args.size, bitemporal=args.bitemporal,
                    workers=args.workers)

    # generation cost alone, one process, on a few blocks (CPU seconds per item)
    gcfg = SimConfig(n=8 * 32, seed=1, difficulty=args.difficulty, size=args.size, bitemporal=args.bitemporal)
    generate_block(gcfg, 0)  # warm-up: imports, quantile tables
    c0 = time.process_time()
    g_items = sum(len(generate_block(gcfg, b)) for b in range(1, n_blocks(gcfg)))
    gen_cpu_ms = (time.process_time() - c0) / g_items * 1e3

    # ArchiveWriter.add alone, in an otherwise idle process, on the same kind of items (ms per item)
    iso_items = [it for b in range(n_blocks(gcfg)) for it in generate_block(gcfg, b)]
    iso = archive_mod.ArchiveWriter(tmp / "iso", [s2_spec(args.size), s1_spec(args.size)], BEN19, "simulated")
    t_iso = time.perf_counter()
    for it in iso_items:
        iso.add(it.id, it.meta, {"s2": it.s2, "s1": it.s1})
    add_iso_ms = (time.perf_counter() - t_iso) / len(iso_items) * 1e3
    iso.abort()

    timers = {"add": 0.0, "close": 0.0, "adds": 0}
    W = archive_mod.ArchiveWriter
    orig_add, orig_close = W.add, W.close

    def timed_add(self, *a, **k):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return orig_add(self, *a, **k)
        finally:
            timers["add"] += time.perf_counter() - t
            timers["adds"] += 1

    def timed_close(self):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return orig_close(self)
        finally:
            timers["close"] += time.perf_counter() - t

    W.add, W.close = timed_add, timed_close  # type: ignore[method-assign]
    load0 = os.getloadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        path = simulate(cfg, out, overwrite=True)
    finally:
        W.add, W.close = orig_add, orig_close  # type: ignore[method-assign]
    wall = time.perf_counter() - t0
    main_cpu = time.process_time() - c0
    load1 = os.getloadavg()
    n_items = timers["adds"]
    size = _du_bytes(path)
    res = {
        "data": "simulated",
        "benchmark": "rsir.data.simulate.simulate end to end (generate + ArchiveWriter + close)",
        "machine": {"cpu_count": os.cpu_count(), "cpu_model": _cpu_model(),
                    "loadavg_before": [round(x, 2) for x in load0], "loadavg_after": [round(x, 2) for x in load1]},
        "config": {"n": cfg.n, "size": cfg.size, "difficulty": cfg.difficulty, "bitemporal": cfg.bitemporal,
                   "workers": cfg.workers, "seed": cfg.seed},
        "n": cfg.n,
        "items_written": n_items,
        "seconds": round(wall, 2),
        "items_per_s": round(n_items / wall, 1),
        "primary_items_per_s": round(cfg.n / wall, 1),
        "archive_bytes": size,
        "archive_gib": round(size / 2**30, 3),
        "breakdown": {
            "main_process_cpu_s": round(main_cpu, 2),
            "writer_add_s": round(timers["add"], 2),
            "writer_add_ms_per_item": round(timers["add"] / max(n_items, 1) * 1e3, 3),
            "writer_close_s": round(timers["close"], 2),
            "main_waiting_or_receiving_s": round(wall - timers["add"] - timers["close"], 2),
            "generation_cpu_ms_per_item_single_process": round(gen_cpu_ms, 3),
            "writer_add_ms_per_item_isolated": round(add_iso_ms, 3),
            "note": "writer_add_s is measured inside ArchiveWriter.add while the Pool's result thread unpickles "
                    "worker output in the same process, so it includes GIL waits; the isolated figure is add() "
                    "alone",
        },
    }
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
        if args.out:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
