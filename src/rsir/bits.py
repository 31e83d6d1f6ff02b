"""Packing of binary codes and Hamming distances: the one place in rsir that knows the bit layout.

Bit order: bit j (0-based, the j-th hash function) of a code is stored in byte j // 8 at bit position
7 - (j % 8), i.e. most significant bit first (``np.packbits(..., bitorder="big")``), which is also the layout
faiss binary indexes use for their byte arrays. A code of b bits takes ceil(b / 8) bytes; unused trailing bits
of the last byte are 0, so they never add to a Hamming distance.
"""

from __future__ import annotations

import numpy as np


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


def _words(codes: np.ndarray) -> np.ndarray:
    """Packed uint8 codes viewed as the widest unsigned words that divide the byte count (no copy)."""
    c = np.ascontiguousarray(codes, dtype=np.uint8)
    for w, t in ((8, np.uint64), (4, np.uint32), (2, np.uint16)):
        if c.shape[-1] % w == 0:
            return c.view(t)
    return c


def _popcount_words(w: np.ndarray) -> np.ndarray:
    return np.bitwise_count(w).sum(axis=-1, dtype=np.int32)


def popcount(a: np.ndarray) -> np.ndarray:
    """Set bits per row of a packed code array (summed over the last axis), int32."""
    return _popcount_words(_words(a))


def hamming_one(query: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Hamming distances (n,) int32 between one packed code (B,) and packed codes (n, B)."""
    q = np.asarray(query, dtype=np.uint8).reshape(1, -1)
    return hamming_matrix(q, np.asarray(codes, dtype=np.uint8).reshape(-1, q.shape[1]))[0]


# working arrays of one block stay around this many words
_BLOCK_ELEMENTS = 1 << 22


def hamming_matrix(queries: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """All pairwise Hamming distances (nq, n) int32 between packed codes, XOR + popcount over machine words in
    blocks of the database so memory stays bounded."""
    q8 = np.asarray(queries, dtype=np.uint8)
    if q8.ndim == 1:
        q8 = q8[None, :]
    c8 = np.asarray(codes, dtype=np.uint8)
    if q8.shape[1] != c8.shape[1]:
        raise ValueError(f"query codes have {q8.shape[1]} bytes, database codes {c8.shape[1]}")
    q, c = _words(q8), _words(c8)
    out = np.empty((q.shape[0], c.shape[0]), dtype=np.int32)
    step = max(1, _BLOCK_ELEMENTS // max(1, q.shape[0] * q.shape[1]))
    for s in range(0, c.shape[0], step):
        x = q[:, None, :] ^ c[None, s:s + step, :]
        out[:, s:s + step] = _popcount_words(x)
    return out
