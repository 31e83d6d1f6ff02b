"""Multi-index hashing (Norouzi, Punjani, Fleet, CVPR 2012) over packed binary codes.

Each b-bit code is split into m disjoint substrings; one table per substring maps a substring value to the
codes that have it (stored as a sorted key array + the positions in that order, so a bucket is a
``searchsorted`` range). Pigeonhole: if ||q - x||_H <= r then some substring differs in at most floor(r / m)
bits, so probing every bucket within floor(r/m) of the query's substring in every table finds all r-neighbours;
candidates are then verified by their full Hamming distance. k-NN grows the substring radius s = 0, 1, ...:
after probing radius s in all m tables every code at distance <= m(s+1) - 1 has been seen, so once k verified
candidates lie within that bound the k nearest are exact (ties ordered by position).
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np

from rsir.bits import hamming_one, unpack_bits


@lru_cache(maxsize=256)
def flip_masks(length: int, radius: int) -> np.ndarray:
    """All uint64 masks of ``length`` bits with exactly ``radius`` bits set."""
    if radius > length:
        return np.zeros(0, dtype=np.uint64)
    out = [sum(1 << i for i in combo) for combo in itertools.combinations(range(length), radius)]
    return np.array(out, dtype=np.uint64)


def default_m(bits: int, n: int) -> int:
    """Norouzi et al.'s rule of thumb m ~ b / log2(n), with substrings of at most 32 bits."""
    m = round(bits / math.log2(max(n, 2)))
    return int(min(bits, max(m, math.ceil(bits / 32), 1)))


def split_lengths(bits: int, m: int) -> list[int]:
    """Substring lengths: b bits split into m parts differing by at most one bit."""
    base, extra = divmod(bits, m)
    return [base + 1 if i < extra else base for i in range(m)]


class MultiIndexHashing:
    """m substring tables over an (n, B) array of packed codes, for exact Hamming range and k-NN search."""

    def __init__(self, codes: np.ndarray, bits: int, m: int | None = None, chunk: int = 1 << 18) -> None:
        self.codes = codes
        self.bits = int(bits)
        self.m = int(m) if m else default_m(self.bits, codes.shape[0])
        if not 1 <= self.m <= self.bits:
            raise ValueError(f"m must be in 1..{self.bits}, got {self.m}")
        self.lengths = split_lengths(self.bits, self.m)
        if max(self.lengths) > 63:
            raise ValueError("substrings longer than 63 bits; use a larger m")
        self.starts = np.cumsum([0] + self.lengths[:-1]).tolist()
        n = codes.shape[0]
        pos_dtype = np.int32 if n < 2**31 else np.int64
        keys = np.empty((self.m, n), dtype=np.uint64)
        for s in range(0, n, chunk):
            keys[:, s:s + chunk] = self.substring_keys(codes[s:s + chunk]).T
        self.order: list[np.ndarray] = []
        self.sorted_keys: list[np.ndarray] = []
        for j in range(self.m):
            o = np.argsort(keys[j], kind="stable").astype(pos_dtype)
            self.order.append(o)
            self.sorted_keys.append(keys[j][o])
        del keys

    def substring_keys(self, codes: np.ndarray) -> np.ndarray:
        """(n, m) uint64 substring values of packed codes (bit j of the code is bit j of the unpacked row)."""
        bits = unpack_bits(codes, self.bits).astype(np.uint64)
        out = np.empty((bits.shape[0], self.m), dtype=np.uint64)
        for j, (a, L) in enumerate(zip(self.starts, self.lengths, strict=True)):
            weights = np.left_shift(np.uint64(1), np.arange(L - 1, -1, -1, dtype=np.uint64))
            out[:, j] = (bits[:, a:a + L] * weights[None, :]).sum(axis=1, dtype=np.uint64)
        return out

    def _probe(self, qkeys: np.ndarray, radius: int) -> np.ndarray:
        """Positions in all buckets whose substring differs from the query's in exactly ``radius`` bits."""
        found = []
        for j in range(self.m):
            masks = flip_masks(self.lengths[j], radius)
            if masks.size == 0:
                continue
            probe = np.bitwise_xor(masks, qkeys[j])
            sk = self.sorted_keys[j]
            lo = np.searchsorted(sk, probe, side="left")
            hi = np.searchsorted(sk, probe, side="right")
            lens = hi - lo
            keep = lens > 0
            if not keep.any():
                continue
            lo, lens = lo[keep], lens[keep]
            total = int(lens.sum())
            offs = np.repeat(lo - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(total)
            found.append(self.order[j][offs])
        if not found:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate(found).astype(np.int64)

    def range_search(self, query: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact (distances, positions) of all codes within Hamming ``radius`` of one packed query, sorted."""
        qkeys = self.substring_keys(query[None, :])[0]
        sub_r = int(radius) // self.m
        cands = [self._probe(qkeys, s) for s in range(0, min(sub_r, max(self.lengths)) + 1)]
        pos = np.unique(np.concatenate(cands)) if cands else np.zeros(0, dtype=np.int64)
        d = hamming_one(query, self.codes[pos])
        keep = d <= radius
        pos, d = pos[keep], d[keep]
        order = np.lexsort((pos, d))
        return d[order], pos[order]

    def knn(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Exact k nearest (distances, positions, substring radius reached) by growing the probe radius."""
        n = self.codes.shape[0]
        k = min(k, n)
        qkeys = self.substring_keys(query[None, :])[0]
        all_pos = np.zeros(0, dtype=np.int64)
        all_d = np.zeros(0, dtype=np.int32)
        s = 0
        for s in range(0, max(self.lengths) + 1):
            new = self._probe(qkeys, s)
            if new.size:
                new = np.unique(new)
                new = new[~np.isin(new, all_pos, assume_unique=True)] if all_pos.size else new
                all_pos = np.concatenate([all_pos, new])
                all_d = np.concatenate([all_d, hamming_one(query, self.codes[new])])
            # after radius s in every table, every code at distance <= m(s+1)-1 has been seen
            if int((all_d <= self.m * (s + 1) - 1).sum()) >= k:
                break
        order = np.lexsort((all_pos, all_d))[:k]
        return all_d[order], all_pos[order], s
