"""Packing of binary codes and Hamming distances: the one place in rsir that knows the bit layout.

Bit order: bit j (0-based, the j-th hash function) of a code is stored in byte j // 8 at bit position
7 - (j % 8), i.e. most significant bit first (``np.packbits(..., bitorder="big")``), which is also the layout
faiss binary indexes use for their byte arrays. A code of b bits takes ceil(b / 8) bytes; unused trailing bits
of the last byte are 0, so they never add to a Hamming distance.
"""

from __future__ import annotations

import numpy as np

#: POPCOUNT[v] = number of set bits of the byte v.
POPCOUNT: np.ndarray = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)


def n_bytes(bits: int) -> int:
    """Bytes per packed code of ``bits`` bits."""
    return (int(bits) + 7) // 8


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack an (n, b) array of {0,1} / bool (or signs: > 0 means 1) into (n, ceil(b/8)) uint8, MSB first."""
    b = np.asarray(bits)
    if b.ndim == 1:
        b = b[None, :]
    if b.dtype != np.bool_:
        b = b > 0
    return np.packbits(b, axis=1, bitorder="big")


def unpack_bits(codes: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Unpack (n, B) uint8 codes to an (n, bits) uint8 array of 0/1 (inverse of ``pack_bits``)."""
    c = np.asarray(codes, dtype=np.uint8)
    if c.ndim == 1:
        c = c[None, :]
    out = np.unpackbits(c, axis=1, bitorder="big")
    return out if bits is None else out[:, :bits]


def signs_to_codes(z: np.ndarray) -> np.ndarray:
    """Codes from real-valued projections: bit = 1 where z > 0 (sign(z) = +1), packed."""
    return pack_bits(np.asarray(z) > 0)


def codes_to_signs(codes: np.ndarray, bits: int) -> np.ndarray:
    """(n, bits) float32 array of +-1 from packed codes (1 -> +1, 0 -> -1)."""
    return unpack_bits(codes, bits).astype(np.float32) * 2.0 - 1.0


def popcount(a: np.ndarray) -> np.ndarray:
    """Set bits per row of a uint8 array (summed over the last axis), via the byte table."""
    return POPCOUNT[np.asarray(a, dtype=np.uint8)].sum(axis=-1, dtype=np.int32)


def hamming_one(query: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Hamming distances (n,) int32 between one packed code (B,) and packed codes (n, B)."""
    return popcount(np.bitwise_xor(np.asarray(codes, dtype=np.uint8), np.asarray(query, dtype=np.uint8)[None, :]))


def hamming_matrix(queries: np.ndarray, codes: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """All pairwise Hamming distances (nq, n) int32 between packed codes, computed in row chunks."""
    q = np.asarray(queries, dtype=np.uint8)
    c = np.asarray(codes, dtype=np.uint8)
    if q.ndim == 1:
        q = q[None, :]
    out = np.empty((q.shape[0], c.shape[0]), dtype=np.int32)
    step = max(1, chunk * 64 // max(1, c.shape[0]))
    for s in range(0, q.shape[0], step):
        x = np.bitwise_xor(q[s:s + step, None, :], c[None, :, :])
        out[s:s + step] = POPCOUNT[x].sum(axis=-1, dtype=np.int32)
    return out
