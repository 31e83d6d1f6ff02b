"""Co-registered pairs for cross-modal training (SS-CM), and the label-free score of model selection on the held-out
slice of the training pairs (the slice itself is rsir.train.selection's).

A pair item is ``{"x": modality-1 image, "x2": modality-2 image, "index": archive position}``: there is no
label key, so no label can reach a cross-modal loss. The same dihedral symmetry is applied to both images of a
pair (they are co-registered; a different one would break the pairing).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rsir.bits import hamming_matrix, pack_bits
from rsir.data.archive import Archive
from rsir.errors import RsirError
from rsir.train.data import PRELOAD_MAX_BYTES, dihedral


def paired_positions(archive: Archive, modalities: list[str], positions: np.ndarray) -> np.ndarray:
    """The positions (of ``positions``) whose items hold every modality; an error naming the archive when none."""
    for m in modalities:
        if m not in archive.modalities:
            raise RsirError(f"archive {archive.path} has no {m} modality (it has {', '.join(archive.modalities)}); "
                            f"ss-cm trains on co-registered {'/'.join(modalities)} pairs")
    every = np.logical_and.reduce([archive.has_modality(m) for m in modalities])
    keep = every[np.asarray(positions, dtype=np.int64)]
    if not keep.any():
        raise RsirError(f"archive {archive.path} has no item with both {' and '.join(modalities)} data (no "
                        f"{modalities[0]} partners); ss-cm trains on co-registered pairs")
    return np.asarray(positions)[keep]


class PairDataset(torch.utils.data.Dataset):
    """Pairs of one split, preloaded when they fit in memory, optionally augmented (same symmetry for both)."""

    def __init__(self, archive: Archive, modalities: list[str], positions: np.ndarray,
                 preload: bool | None = None, augment: bool = False, seed: int = 0) -> None:
        self.archive = archive
        self.modalities = list(modalities)
        self.positions = np.asarray(positions)
        if len(self.positions) == 0:
            raise RsirError(f"archive {archive.path}: no pairs to train on")
        self.augment, self.seed, self.epoch = augment, seed, 0
        nbytes = sum(len(archive.spec(m).bands) * archive.spec(m).grid[0] * archive.spec(m).grid[1] * 4
                     for m in self.modalities) * len(self.positions)
        self.images: list[torch.Tensor] | None = None
        if preload or (preload is None and nbytes <= PRELOAD_MAX_BYTES):
            self.images = [torch.from_numpy(np.concatenate([x for _, x in archive.batches(
                64, modality=m, positions=self.positions.tolist())])) for m in self.modalities]

    def __len__(self) -> int:
        return len(self.positions)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict[str, Any]:
        p = int(self.positions[i])
        if self.images is not None:
            xs = [im[i] for im in self.images]
        else:
            xs = [torch.from_numpy(self.archive.image(p, m)) for m in self.modalities]
        if self.augment:
            k = int(np.random.default_rng((self.seed, self.epoch, p)).integers(8))
            xs = [dihedral(x, k).contiguous() for x in xs]
        return {"x": xs[0], "x2": xs[1], "index": p}


def partner_mrr(h1: np.ndarray, h2: np.ndarray) -> float:
    """Label-free selection score: mean reciprocal rank of each item's cross-modal partner among the slice, by
    Hamming distance of the sign codes, both directions averaged; ties count against the partner (pessimistic)."""
    c1, c2 = pack_bits(h1 > 0), pack_bits(h2 > 0)
    scores = []
    for a, b in ((c1, c2), (c2, c1)):
        d = hamming_matrix(a, b).astype(np.int64)
        own = np.diag(d)[:, None]
        rank = (d <= own).sum(1)  # the partner itself counts once: rank >= 1
        scores.append(float((1.0 / rank).mean()))
    return float(np.mean(scores))
