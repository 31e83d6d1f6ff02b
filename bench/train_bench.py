"""Training and encoding throughput (patches/s) of the default encoder on Sentinel-2 sized patches.

Measures, on random normalised 12 x 120 x 120 inputs (speed does not depend on the values):
- encoding: ModelEncoder.encode of a MiLAN hash model (encoder + hash head + bit packing), batch 256;
- classifier training: forward + BCE + backward + Adam step, batch 64, flips/rotations excluded;
- MiLAN head training: the published frozen-feature setting, batch 90 with the diverse miner.
Writes bench/results/train.json. Usage: .venv/bin/python bench/train_bench.py [--threads 2] [--width 16]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from rsir.methods.recipes import ClassifierRecipe, MilanRecipe
from rsir.models.encoder import ModelEncoder
from rsir.models.io import ModelMeta
from rsir.models.net import NetConfig, RetrievalNet
from rsir.models.resnet import ResNetConfig


def _rate(fn, n_items: int, min_seconds: float = 3.0) -> float:
    fn()  # warm-up
    t0, reps = time.perf_counter(), 0
    while time.perf_counter() - t0 < min_seconds:
        fn()
        reps += 1
    return n_items * reps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--size", type=int, default=120)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    enc_cfg = ResNetConfig(12, args.width, [1, 1, 1])
    x = np.random.default_rng(0).normal(size=(256, 12, args.size, args.size)).astype(np.float32)
    net = RetrievalNet(NetConfig(enc_cfg, n_classes=19, bits=64, output="hash"))
    enc = ModelEncoder(net, ModelMeta("s2"), batch_size=256)
    encode_rate = _rate(lambda: enc.encode(x), len(x))

    cls = ClassifierRecipe(NetConfig(enc_cfg, n_classes=19))
    opt = cls.optimizer(None)
    xb = torch.from_numpy(x[:64])
    yb = (torch.rand(64, 19) < 0.2).float()

    def cls_step() -> None:
        cls.net.train()
        loss, _ = cls.loss({"x": xb, "label": yb})
        opt.zero_grad()
        loss.backward()
        opt.step()

    cls_rate = _rate(cls_step, 64)
    mil = MilanRecipe(enc_cfg.feature_dim, 64, sampler="diverse")
    mopt = mil.optimizer(None)
    fb = torch.randn(90, enc_cfg.feature_dim)
    lb = (torch.rand(90, 19) < 0.2).float()

    def milan_step() -> None:
        loss, _ = mil.loss({"x": fb, "label": lb})
        mopt.zero_grad()
        loss.backward()
        mopt.step()

    milan_rate = _rate(milan_step, 90)
    res = {
        "what": "patches/s on random normalised S2 patches (12 bands)",
        "patch": [12, args.size, args.size], "threads": args.threads, "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "encoder": {**enc_cfg.to_json(), "feature_dim": enc_cfg.feature_dim,
                    "parameters": sum(p.numel() for p in net.encoder.parameters())},
        "encode_patches_per_s": round(encode_rate, 1),
        "classifier_train_patches_per_s": round(cls_rate, 1),
        "milan_head_train_items_per_s": round(milan_rate, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
