"""Model selection on a held-out slice of the training split, never on items that are later queries.

The evaluation protocols query with the validation split (RSiM) or the test split (leave-one-out), so choosing
the best epoch or stopping early on either would tune the model to its own test queries. Instead a fixed,
seeded slice of the training split is held out: the model never trains on it, and the per-epoch selection
score ranks the slice's items (as queries) against the whole training split (the query itself left out).

The slice depends only on the item ids, the fraction and the seed, not on their order or on the other items:
each id gets a key from a keyed hash (BLAKE2b of the seed and the id), and the ``round(fraction * n)`` items with
the smallest keys form the slice (ties, which need a hash collision, go to the smaller id). So the same archive
gives the same slice on every machine and run, and every method that follows this rule (MiLAN, the classifier,
cross-sensor and text-image training) holds out the same items.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

RULE = ("blake2b(seed:id) keys, the round(fraction*n) smallest (at least 1 when n >= 2) held out of training; "
        "queries of the selection score vs the whole training split, query left out")
DEFAULT_FRACTION = 0.1
DEFAULT_SEED = 0


def _key(seed: int, item_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}\x00{item_id}".encode(), digest_size=8).digest(), "big")


def selection_slice(train_ids: Sequence[Any], fraction: float = DEFAULT_FRACTION,
                    seed: int = DEFAULT_SEED) -> np.ndarray:
    """Boolean mask over ``train_ids``: True for the items held out for model selection.

    ``round(fraction * n)`` items, at least one when ``fraction > 0`` and there are two or more items, never all
    of them; ``fraction = 0`` holds out nothing.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"selection fraction must be in [0, 1), got {fraction}")
    ids = [str(i) for i in train_ids]
    n = len(ids)
    mask = np.zeros(n, dtype=bool)
    if fraction == 0.0 or n < 2:
        return mask
    m = min(max(1, round(fraction * n)), n - 1)
    keys = sorted((_key(seed, s), s, j) for j, s in enumerate(ids))
    mask[[j for _, _, j in keys[:m]]] = True
    return mask


def ids_digest(ids: Sequence[Any]) -> str:
    """A short digest of a set of ids (order-free), to record which items a slice held."""
    h = hashlib.sha256()
    for s in sorted(str(i) for i in ids):
        h.update(s.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Selection:
    """Which training items are held out for model selection, and how they were chosen (goes in config.json)."""

    split: str | None
    fraction: float
    seed: int
    n_train: int
    n_selection: int
    digest: str

    def to_json(self) -> dict[str, Any]:
        """The record kept in the model's config."""
        return {"split": self.split if self.split is not None else "(all items)", "fraction": self.fraction,
                "seed": self.seed, "n_fit": self.n_train - self.n_selection, "n_selection": self.n_selection,
                "selection_ids_sha256_16": self.digest, "rule": RULE}


def split_for_selection(train_ids: Sequence[Any], split: str | None, fraction: float = DEFAULT_FRACTION,
                        seed: int = DEFAULT_SEED) -> tuple[np.ndarray, Selection]:
    """(mask, record): the mask of :func:`selection_slice` and a :class:`Selection` describing it."""
    mask = selection_slice(train_ids, fraction, seed)
    chosen = [i for i, m in zip(train_ids, mask, strict=True) if m]
    return mask, Selection(split, float(fraction), int(seed), len(mask), int(mask.sum()), ids_digest(chosen))
