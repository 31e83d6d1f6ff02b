"""Training and encoding throughput (patches/s) of the default encoder on Sentinel-2 12 x 120 x 120 patches.

Measures, with os.getloadavg() recorded around every number (the 2 cores are shared with other sessions):
- encode path as `rsir index --model` runs it (rsir.pipeline.build_index with the model encoder): read from the
  archive's LMDB store, resample to the 120 x 120 grid, normalise, forward, threshold and pack the bits, index,
  with the next batch read in a background thread (rsir.runtime.prefetch) while this one is encoded;
- side by side, the reference path it replaced: the same reader and encoder in one loop (read 128, encode);
- every measurement twice, in separate processes: with malloc as rsir tunes it (rsir.runtime.tune_allocator,
  large freed blocks stay in the heap) and with glibc's defaults (RSIR_TUNE_MALLOC=0);
- its parts: archive reading alone (Archive.batches), and the network alone (ModelEncoder.encode on
  normalised batches in memory), the latter also in the layout used before this benchmark's fixes
  (channels-last, batch norm not folded, batch 256) to show what the fixes bought;
- classifier training (forward + BCE + backward + Adam, batch 64, augmentation excluded) and MiLAN head
  training (the published frozen-feature setting, batch 90) with each triplet sampler.
Each rate is measured ``--rounds`` times, interleaved; the JSON keeps every value, the best and the median.
torch intra-op threads: each of ``--threads`` (default 1 and 2) in its own child process.

Usage: .venv/bin/python bench/train_bench.py [--archive DIR] [--threads 1 2] [--rounds 3] [--allocators tuned default]
       (without --archive a 4,096-item simulated hard archive is written under /work/bench-data/train-bench)
Writes bench/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _rate(fn: Callable[[], int], min_seconds: float) -> dict[str, Any]:
    """items/s of ``fn`` (which returns the items it processed) over at least ``min_seconds``."""
    fn()  # warm-up
    load0 = _load()
    t0, items = time.perf_counter(), 0
    while time.perf_counter() - t0 < min_seconds:
        items += fn()
    secs = time.perf_counter() - t0
    return {"rate": round(items / secs, 1), "seconds": round(secs, 2), "loadavg_before": load0,
            "loadavg_after": _load()}


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["rate"] for r in runs]
    return {"best": max(rates), "median": round(float(np.median(rates)), 1), "runs": runs}


def child(args: argparse.Namespace) -> dict[str, Any]:
    """All measurements at one thread count (run in a fresh process so the OpenMP pool has that size)."""
    import torch

    from rsir.runtime import tune_allocator

    threads = int(args.threads[0])
    torch.set_num_threads(threads)
    tuned = tune_allocator()  # a no-op returning False under RSIR_TUNE_MALLOC=0 (the "default" children)
    from rsir.data.archive import open_archive
    from rsir.methods.recipes import ClassifierRecipe, MilanRecipe
    from rsir.models.encoder import ModelEncoder
    from rsir.models.io import ModelMeta
    from rsir.models.net import NetConfig, RetrievalNet
    from rsir.models.resnet import ResNetConfig
    from rsir.pipeline import build_index

    torch.manual_seed(0)
    arch = open_archive(args.archive)
    spec = arch.spec("s2")
    mean, std = arch.band_stats("s2")
    enc_cfg = ResNetConfig(len(spec.bands), args.width, [1, 1, 1])
    net = RetrievalNet(NetConfig(enc_cfg, n_classes=len(arch.nomenclature), bits=64, output="hash"))
    meta = ModelMeta("s2", list(spec.bands), mean, std, spec.grid[0], list(arch.nomenclature.classes))
    enc = ModelEncoder(net, meta)
    n = len(arch)
    x = next(arch.batches(256, modality="s2", positions=list(range(min(256, n)))))[1]

    def old_layout() -> Callable[[], int]:
        # before: channels-last weights and inputs in inference, batch norm kept, batches of 256
        old = RetrievalNet(net.config)
        old.load_state_dict(net.state_dict())
        old.eval()
        old.encoder._use_format(torch.channels_last)

        def run() -> int:
            with torch.inference_mode():
                xt = torch.from_numpy(x)
                for s in range(0, len(xt), 256):
                    h = old(xt[s:s + 256])["hash"]
                    np.packbits(h.numpy() > 0.5, axis=1)
            return len(x)
        return run

    def read() -> int:
        for _ids, _x in arch.batches(64, modality="s2"):
            pass
        return n

    def whole() -> int:
        with tempfile.TemporaryDirectory() as tmp:
            build_index(arch, Path(tmp) / "idx", encoder=enc, progress=False)
        return n

    def serial() -> int:
        # the reference: build_index's loop before prefetching (read a batch of 128, then encode it, one thread
        # of Python), same reader and encoder otherwise
        codes = [enc.encode(xb) for _ids, xb in arch.batches(128, modality="s2")]
        return sum(len(c) for c in codes)

    cls = ClassifierRecipe(NetConfig(enc_cfg, n_classes=19))
    opt = cls.optimizer(None)
    xb = torch.from_numpy(np.ascontiguousarray(np.resize(x, (64, *x.shape[1:]))))
    yb = (torch.rand(64, 19) < 0.2).float()

    def cls_step() -> int:
        cls.net.train()
        loss, _ = cls.loss({"x": xb, "label": yb})
        opt.zero_grad()
        loss.backward()
        opt.step()
        return 64

    labels90 = torch.from_numpy(arch.labels[np.arange(90) % n].astype(np.float32))
    heads = {}
    for sampler in ("random", "batch-hard", "diverse"):
        mil = MilanRecipe(enc_cfg.feature_dim, 64, sampler=sampler)
        mopt = mil.optimizer(None)
        fb = torch.rand(90, enc_cfg.feature_dim)

        def milan_step(mil: MilanRecipe = mil, mopt: torch.optim.Optimizer = mopt, fb: torch.Tensor = fb) -> int:
            loss, _ = mil.loss({"x": fb, "label": labels90})
            mopt.zero_grad()
            loss.backward()
            mopt.step()
            return 90
        heads[sampler] = milan_step

    tasks: dict[str, Callable[[], int]] = {
        "encode_path_index_model": whole,
        "encode_path_serial_reference": serial,
        "read_archive": read,
        "network_encode": lambda: len(enc.encode(x)),
        "network_encode_before": old_layout(),
        "classifier_train": cls_step,
        **{f"milan_head_train_{k}": v for k, v in heads.items()},
    }
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in tasks}
    for _ in range(args.rounds):
        for k, fn in tasks.items():
            runs[k].append(_rate(fn, args.min_seconds))
    return {"threads": threads, "torch_threads": torch.get_num_threads(), "items": n,
            "allocator": "tuned" if tuned else "glibc default", **{k: _summary(v) for k, v in runs.items()}}


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archive", default=None, help="archive with an s2 modality (default: simulate 4,096 items)")
    ap.add_argument("--allocators", nargs="+", default=["tuned", "default"], choices=["tuned", "default"],
                    help="glibc malloc as rsir tunes it (rsir.runtime.tune_allocator) and/or left at its defaults")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "train.json"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    if args.archive is None:
        args.archive = "/work/bench-data/train-bench/sim-hard-4k"
        if not (Path(args.archive) / "manifest.json").exists():
            subprocess.run([str(Path(sys.executable).parent / "rsir"), "simulate", "--n", "4096", "--out",
                            args.archive, "--difficulty", "hard", "--seed", "0", "--bitemporal", "0", "--workers",
                            "1", "--quiet"], check=True)
    res: dict[str, Any] = {
        "what": "patches/s on a SIMULATED hard archive (S2 12 x 120 x 120, uint16 in LMDB), default encoder",
        "archive": args.archive, "machine": machine(), "width": args.width, "rounds": args.rounds,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg_start": _load(), "by_threads": {}}
    for th in args.threads:
        for alloc in args.allocators:
            env = {**os.environ, "OMP_NUM_THREADS": str(th), "RSIR_TUNE_MALLOC": "1" if alloc == "tuned" else "0"}
            cmd = [sys.executable, __file__, "--child", "--archive", args.archive, "--threads", str(th), "--width",
                   str(args.width), "--rounds", str(args.rounds), "--min-seconds", str(args.min_seconds)]
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
            key = str(th) if alloc == "tuned" else f"{th} (glibc default malloc)"
            res["by_threads"][key] = json.loads(out.strip().splitlines()[-1])
    res["loadavg_end"] = _load()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    short = {th: {k: (v["best"], v["median"]) for k, v in r.items() if isinstance(v, dict)}
             for th, r in res["by_threads"].items()}
    print(json.dumps({"loadavg": [res["loadavg_start"], res["loadavg_end"]], "best, median": short}, indent=1))


if __name__ == "__main__":
    main()
