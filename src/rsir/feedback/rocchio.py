"""Relevance feedback: move the query towards the results marked relevant and away from those marked not.

Rocchio (1971) on the index's own vectors: ``q' = alpha q + beta mean(positives) - gamma mean(negatives)``.
Float vectors combine as they are; packed binary codes are read as +-1 per bit, combined, and thresholded back
to bits (a bit with a sum of exactly 0 keeps the query's bit), so the re-rank is again an exact Hamming search
of the index. Pure numpy: the service calls it without torch.
"""

from __future__ import annotations

import numpy as np

from rsir.feedback import FeedbackError

ALPHA, BETA, GAMMA = 1.0, 0.75, 0.25


def _signed_bits(codes: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.asarray(codes, np.uint8), axis=-1).astype(np.float32) * 2.0 - 1.0


def rocchio(query: np.ndarray, positives: np.ndarray, negatives: np.ndarray, metric: str,
            alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA) -> np.ndarray:
    """The moved query vector, in the index's own format (packed uint8 codes for ``hamming``)."""
    q = np.asarray(query)
    pos = np.asarray(positives).reshape(-1, q.shape[-1]) if len(positives) else np.zeros((0, q.shape[-1]), q.dtype)
    neg = np.asarray(negatives).reshape(-1, q.shape[-1]) if len(negatives) else np.zeros((0, q.shape[-1]), q.dtype)
    if metric == "hamming":
        qs = _signed_bits(q)
        moved = alpha * qs
        if len(pos):
            moved = moved + beta * _signed_bits(pos).mean(0)
        if len(neg):
            moved = moved - gamma * _signed_bits(neg).mean(0)
        bits = np.where(moved == 0, qs > 0, moved > 0)
        return np.packbits(bits.astype(np.uint8), axis=-1)
    if metric not in ("l2", "ip"):
        raise FeedbackError(f"relevance feedback: unknown metric {metric!r}")
    moved = alpha * q.astype(np.float64)
    if len(pos):
        moved = moved + beta * pos.astype(np.float64).mean(0)
    if len(neg):
        moved = moved - gamma * neg.astype(np.float64).mean(0)
    return moved.astype(np.float32)
