"""Cross-sensor encoding throughput (issue 13): `rsir index --model` of an SS-CM model, both modalities, end to end.

One run, one archive, the paths side by side, alternating round by round so that the machine's load hits them
alike:

* ``reference``: the encoding loop as it was before this change (each value decoded to a band dict, stacked,
  resampled to the 120 px grid into the 12-band batch; a prefetch thread reads the next batch while the
  encoder, on torch's threads, encodes this one);
* ``reader``: the new reader only (``Archive.band_groups``: bands copied once from LMDB into per-size stacks,
  then resampled and stacked as before), same loop otherwise;
* ``native``: what ``rsir index`` now does (``rsir.models.crossmodal.encode_archive``): the native-size band
  groups go through the stem as convolutions (no resampled bands, no 12-band stack), batches on two worker
  threads with one torch thread each.

Each is ``rsir.pipeline.build_index`` (reading, normalising, both encoders, the index written to disk), timed by
the manifest's ``build_seconds``; the process's CPU seconds and the load average are recorded beside it, and
the codes of every path are compared with the reference's. Then ``rsir index`` itself runs as a command (process
start and imports outside ``build_seconds``). Before and after the rounds, :func:`capacity` records how many cores
one and two busy threads of this process actually got: on a shared machine that, not the core count, bounds the
wall-clock numbers.

Usage: PYTHONPATH=src .venv/bin/python bench/encode_throughput_bench.py [--n 4096] [--size 120] [--width 16]
       [--rounds 3] [--threads 1,2] [--work /tmp/encode-throughput] [--out bench/results/sscm_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from train_bench import machine  # noqa: E402

import rsir.models.crossmodal as crossmodal  # noqa: E402
from rsir.data.archive import Archive, open_archive  # noqa: E402
from rsir.data.bands import to_grid_batch  # noqa: E402
from rsir.encoding import load_encoder  # noqa: E402
from rsir.pipeline import IndexDir, build_index  # noqa: E402
from rsir.runtime import prefetch  # noqa: E402

NATIVE = crossmodal.encode_archive


def reference_encode(enc: Any, arch: Archive, positions: Sequence[int], batch_size: int = 64,
                     progress: bool = False) -> Iterator[tuple[list[str], np.ndarray]]:
    """The loop before this change: Archive.batches as it was (get -> to_grid_batch), prefetched, enc.encode."""
    spec = arch.spec(enc.modality)
    order = list(spec.bands)
    mean, std = arch.band_stats(spec.name, order)

    def batches() -> Iterator[tuple[list[str], np.ndarray]]:
        for s in range(0, len(positions), batch_size):
            chunk = [int(p) for p in positions[s:s + batch_size]]
            yield [arch.ids[p] for p in chunk], to_grid_batch([arch.get(p, spec.name) for p in chunk], order,
                                                              spec.grid, mean=mean, std=std)

    for ids, x in prefetch(batches(), depth=2):
        yield ids, enc.encode(x)


def reader_encode(enc: Any, arch: Archive, positions: Sequence[int], batch_size: int = 64,
                  progress: bool = False) -> Iterator[tuple[list[str], np.ndarray]]:
    """The same loop on the new reader (band_groups, then assembled on the grid)."""
    for ids, x in prefetch(arch.batches(batch_size, modality=enc.modality, positions=list(positions)), depth=2):
        yield ids, enc.encode(x)


PATHS = {"reference": reference_encode, "reader": reader_encode, "native": NATIVE}


def run_path(name: str, arch_dir: Path, model: Path, out: Path, threads: int) -> dict[str, Any]:
    import torch

    crossmodal.encode_archive = PATHS[name]  # type: ignore[assignment]
    torch.set_num_threads(threads)
    try:
        load0 = os.getloadavg()[0]
        cpu0, t0 = time.process_time(), time.perf_counter()
        build_index(open_archive(arch_dir), out, encoder=load_encoder("model", str(model)), kind="auto",
                    progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        crossmodal.encode_archive = NATIVE  # type: ignore[assignment]
    m = IndexDir.read_manifest(out)
    n = int(m["modality_counts"]["s1"])
    return {"path": name, "torch_threads": threads, "pairs": n, "build_seconds": m["build_seconds"],
            "pairs_per_s": round(n / m["build_seconds"], 1), "cpu_seconds": round(cpu, 3),
            "pairs_per_cpu_s": round(n / cpu, 1), "wall_s": round(wall, 3), "loadavg_before": round(load0, 2),
            "loadavg_after": round(os.getloadavg()[0], 2)}


def capacity(seconds: float = 1.5) -> dict[str, float]:
    """How much of the machine this process gets now: CPU seconds per wall second of one and of two threads
    doing 512 x 512 float32 matmuls (one torch thread each). On a quiet 2-core machine about 1 and 2; on a
    loaded one what the other processes leave, which bounds every wall-clock number taken beside it."""
    import threading

    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    a = torch.randn(512, 512)
    out: dict[str, float] = {}
    try:
        for n in (1, 2):
            stop = time.perf_counter() + seconds

            def work(stop: float = stop) -> None:
                while time.perf_counter() < stop:
                    a @ a

            threads = [threading.Thread(target=work) for _ in range(n)]
            c0, t0 = time.process_time(), time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            out[f"cores_used_by_{n}_thread(s)"] = round((time.process_time() - c0) / (time.perf_counter() - t0), 2)
    finally:
        torch.set_num_threads(before)
    return out


def differing_bits(a: Path, b: Path, ids: list[str]) -> dict[str, int]:
    x, y = IndexDir.open(a), IndexDir.open(b)
    return {m: int(np.unpackbits(x.vectors(ids, m) ^ y.vectors(ids, m)).sum()) for m in ("s1", "s2")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--size", type=int, default=120)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--paths", default="reference,reader,native")
    ap.add_argument("--work", default="/tmp/encode-throughput")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sscm_throughput.json"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    rsir = [sys.executable, "-m", "rsir"]
    arch, model = work / f"arch-{args.n}-{args.size}", work / f"model-w{args.width}"
    commands = []
    if not (arch / "manifest.json").exists():
        cmd = ["simulate", "--n", str(args.n), "--out", str(arch), "--difficulty", "hard", "--size",
               str(args.size), "--bitemporal", "0", "--seed", "0", "--quiet"]
        subprocess.run(rsir + cmd, check=True, env=env)
        commands.append("rsir " + " ".join(cmd))
    if not (model / "config.json").exists():
        cmd = ["train", str(arch), "--method", "ss-cm", "--epochs", "0", "--width", str(args.width), "--out",
               str(model), "--quiet"]
        subprocess.run(rsir + cmd, check=True, env=env)
        commands.append("rsir " + " ".join(cmd))
    ids = open_archive(arch).ids
    threads = [int(t) for t in args.threads.split(",")]
    paths = args.paths.split(",")
    run_path("native", arch, model, work / "warm", 1)  # page cache and first-call costs, not timed
    rows = []
    probes = [{"when": "start", "loadavg": round(os.getloadavg()[0], 2), **capacity()}]
    print(json.dumps(probes[-1]), flush=True)
    for r in range(args.rounds):
        for t in threads:
            for name in paths:
                rec = run_path(name, arch, model, work / f"index-{name}-{t}", t)
                rec["round"] = r
                if name != "reference" and "reference" in paths:
                    rec["bits_differing_from_reference"] = differing_bits(work / f"index-reference-{t}",
                                                                          work / f"index-{name}-{t}", ids)
                rows.append(rec)
                print(json.dumps(rec), flush=True)
    probes.append({"when": "after the rounds", "loadavg": round(os.getloadavg()[0], 2), **capacity()})
    print(json.dumps(probes[-1]), flush=True)
    cli = []
    for t in threads:
        out = work / f"cli-index-{t}"
        cmd = ["index", str(arch), "--model", str(model), "--out", str(out), "--no-progress"]
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        subprocess.run(rsir + cmd, check=True, env={**env, "OMP_NUM_THREADS": str(t)}, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        m = IndexDir.read_manifest(out)
        cli.append({"command": f"OMP_NUM_THREADS={t} rsir " + " ".join(cmd), "build_seconds": m["build_seconds"],
                    "pairs_per_s": round(args.n / m["build_seconds"], 1), "command_wall_s": round(wall, 2),
                    "loadavg_before": round(load0, 2)})
        print(json.dumps(cli[-1]), flush=True)
    summary: dict[str, Any] = {}
    for name in paths:
        for t in threads:
            sel = [x for x in rows if x["path"] == name and x["torch_threads"] == t]
            summary[f"{name}, {t} torch thread(s)"] = {
                "best_pairs_per_s": max(x["pairs_per_s"] for x in sel),
                "median_pairs_per_s": float(np.median([x["pairs_per_s"] for x in sel])),
                "best_pairs_per_cpu_s": max(x["pairs_per_cpu_s"] for x in sel),
                "loadavg_range": [min(x["loadavg_before"] for x in sel), max(x["loadavg_after"] for x in sel)]}
    doc = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "data": f"SIMULATED hard archive, {args.n} S1/S2 pairs at {args.size} x {args.size} px (reBEN layout: "
                   "S2 bands at 10/20/60 m native sizes as uint16, S1 VV/VH float32 dB); untrained SS-CM model, "
                   f"width {args.width}, 64 bits",
           "settings": vars(args), "commands": commands, "capacity": probes, "summary": summary, "rows": rows,
           "cli": cli}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    for k, v in summary.items():
        print(k, v)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
