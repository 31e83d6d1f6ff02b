"""Training data: archive splits as datasets of {"x", "label", "index"}, preloaded or read lazily, with
augmentations that keep spectra physically consistent (flips and 90-degree rotations only)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rsir.data.archive import Archive
from rsir.errors import RsirError

# Preload a split into memory when its float32 tensor is at most this large.
PRELOAD_MAX_BYTES = 2 << 30


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 symmetries of the square on the last two axes: rotate by 90*(k%4) degrees, flip if k>=4."""
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if k >= 4 else y


def dihedral_batch(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Each image ``x[n]`` under the symmetry ``k[n]`` of the square (:func:`dihedral`), one call per symmetry
    present instead of one per image."""
    out = torch.empty_like(x)
    for s in range(8):
        sel = (k == s).nonzero().flatten()
        if sel.numel():
            out[sel] = dihedral(x[sel], s)
    return out


class SplitDataset(torch.utils.data.Dataset):
    """Items of one archive split as {"x": CxHxW float32, "label": multi-hot float32, "index": position}."""

    def __init__(self, archive: Archive, modality: str, split: str | None, preload: bool | None = None,
                 augment: bool = False, seed: int = 0, positions: np.ndarray | None = None) -> None:
        self.archive = archive
        self.modality = modality
        # ``positions`` narrows the split (e.g. the training items left after the model-selection slice)
        self.positions = archive.split_positions(split) if positions is None else np.asarray(positions)
        if len(self.positions) == 0:
            raise RsirError(f"archive {archive.path} has no items in split {split!r}")
        self.labels = torch.from_numpy(archive.labels[self.positions].astype(np.float32))
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        spec = archive.spec(modality)
        nbytes = len(self.positions) * len(spec.bands) * spec.grid[0] * spec.grid[1] * 4
        self.images: torch.Tensor | None = None
        if preload or (preload is None and nbytes <= PRELOAD_MAX_BYTES):
            self.images = torch.from_numpy(np.stack([archive.image(int(p), modality) for p in self.positions]))

    def __len__(self) -> int:
        return len(self.positions)

    def set_epoch(self, epoch: int) -> None:
        """Augmentations depend on (seed, epoch, item), so runs and resumed runs are reproducible."""
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict[str, Any]:
        p = int(self.positions[i])
        x = self.images[i] if self.images is not None else torch.from_numpy(self.archive.image(p, self.modality))
        if self.augment:
            k = int(np.random.default_rng((self.seed, self.epoch, p)).integers(8))
            x = dihedral(x, k).contiguous()
        return {"x": x, "label": self.labels[i], "index": p}


class TensorItems(torch.utils.data.Dataset):
    """Precomputed inputs (e.g. frozen features) with labels and archive positions."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor, positions: np.ndarray) -> None:
        self.x, self.labels, self.positions = x, labels, np.asarray(positions)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": self.x[i], "label": self.labels[i], "index": int(self.positions[i])}
