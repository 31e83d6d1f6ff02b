"""Tiny archives written through the real ArchiveWriter, for tests that need an archive quickly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsir.data.archive import ArchiveWriter
from rsir.data.bands import s1_spec, s2_spec
from rsir.data.nomenclature import BEN19


def write_tiny_archive(path: Path, n: int = 12, size: int = 12, seed: int = 0, with_s1: bool = True) -> Path:
    """n random S2(+S1) items at ``size`` px with random 19-class labels and train/validation/test splits."""
    rng = np.random.default_rng(seed)
    specs = [s2_spec(size)] + ([s1_spec(size)] if with_s1 else [])
    splits = ["train", "validation", "test"]
    with ArchiveWriter(path, specs, BEN19, "test") as w:
        for i in range(n):
            arrays = {"s2": {b: rng.integers(0, 10000, sh, dtype=np.uint16) for b, sh in specs[0].shapes.items()}}
            if with_s1:
                arrays["s1"] = {b: rng.normal(-12, 3, sh).astype(np.float32) for b, sh in specs[1].shapes.items()}
            labs = sorted(set(rng.choice(BEN19.classes, size=int(rng.integers(1, 4))).tolist()))
            w.add(f"item{i:03d}", {"split": splits[i % 3], "labels": labs, "country": "Austria",
                                   "lon": 14.0 + i * 0.01, "lat": 47.0, "date": "2017-06-13"}, arrays)
    return path
