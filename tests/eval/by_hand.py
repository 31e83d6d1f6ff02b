"""Retrieval metrics written as plain loops, independent of rsir.eval, to check rsir's numbers against."""

from __future__ import annotations

import numpy as np


def hamming_by_hand(a: np.ndarray, b: np.ndarray) -> int:
    """Differing bits of two packed codes, counted on their unpacked 0/1 vectors."""
    return int((np.unpackbits(a) != np.unpackbits(b)).sum())


def ranking_by_hand(q: np.ndarray, db: np.ndarray, skip: int | None = None) -> list[int]:
    """Database rows by (Hamming distance, row), the query's own row ``skip`` left out."""
    pairs = sorted((hamming_by_hand(q, db[j]), j) for j in range(len(db)) if j != skip)
    return [j for _, j in pairs]


def map_a_and_p_by_hand(q_codes: np.ndarray, db_codes: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray,
                        k: int, loo: bool = False) -> tuple[float, float]:
    """mAP@k variant A (AP = (1/R_k) sum_{i<=k} rel_i P@i, 0 when no hit) and P@k, relevance = a shared label;
    ``loo``: query i is database row i and is left out of its ranking."""
    aps, ps = [], []
    for i in range(len(q_codes)):
        top = ranking_by_hand(q_codes[i], db_codes, i if loo else None)[:k]
        hits, ap = 0, 0.0
        for rank, j in enumerate(top, 1):
            if (q_labels[i] & db_labels[j]).any():
                hits += 1
                ap += hits / rank
        aps.append(ap / hits if hits else 0.0)
        ps.append(hits / k)
    return float(np.mean(aps)), float(np.mean(ps))
