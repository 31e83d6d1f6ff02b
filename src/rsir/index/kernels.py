"""Compiled (numba) Hamming kernels over codes held as uint64 words: flat scan k-NN and radius search.

Codes are (n, W) uint64 arrays (``as_words``: packed uint8 codes padded with zero bytes to whole 64-bit words;
padding is zero in queries and codes alike, so it never counts). Every result is ordered by (distance,
position): ties follow insertion order, exactly as the faiss-backed flat index reports them.

The k-NN scan computes distances for a block of codes at a time (a loop LLVM vectorises), then offers only
those below the current k-th distance to a bounded max-heap keyed on (distance, position); positions arrive
in ascending order, so a code tying the k-th distance never displaces it. Nothing is allocated per code. The
batch variant walks the codes once per block for all queries, so a block is read from memory once.

The heap helpers are shared with the multi-index hashing and exact IVF kernels (rsir.index.mih_kernels,
rsir.index.ivf_exact), where candidates arrive in any order and the full (distance, position) comparison
matters.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np
from numba import types
from numba.extending import intrinsic

BLOCK = 4096  # codes per distance block of the flat scan


def as_words(codes: np.ndarray) -> np.ndarray:
    """(n, B) packed uint8 codes as (n, ceil(B/8)) uint64 words (zero padded; a view when B % 8 == 0)."""
    c = np.ascontiguousarray(codes, dtype=np.uint8)
    if c.ndim == 1:
        c = c[None, :]
    b = c.shape[1]
    if b % 8:
        pad = np.zeros((c.shape[0], 8 - b % 8), dtype=np.uint8)
        c = np.ascontiguousarray(np.concatenate([c, pad], axis=1))
    return c.view(np.uint64)


@nb.njit(cache=True, inline="always")
def _worse(da: int, pa: int, db: int, pb: int) -> bool:
    """(da, pa) ranks after (db, pb)."""
    return da > db or (da == db and pa > pb)


@nb.njit(cache=True)
def heap_push(hd: np.ndarray, hp: np.ndarray, size: int, k: int, d: int, p: int) -> int:
    """Offer (d, p) to a max-heap of the k best (distance, position) pairs; returns the new size."""
    if size < k:
        i = size
        size += 1
        while i > 0:
            parent = (i - 1) >> 1
            if _worse(d, p, hd[parent], hp[parent]):
                hd[i] = hd[parent]
                hp[i] = hp[parent]
                i = parent
            else:
                break
        hd[i] = d
        hp[i] = p
        return size
    if not _worse(hd[0], hp[0], d, p):
        return size
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        c = left
        right = left + 1
        if right < size and _worse(hd[right], hp[right], hd[left], hp[left]):
            c = right
        if _worse(hd[c], hp[c], d, p):
            hd[i] = hd[c]
            hp[i] = hp[c]
            i = c
        else:
            break
    hd[i] = d
    hp[i] = p
    return size


@nb.njit(cache=True)
def heap_sorted(hd: np.ndarray, hp: np.ndarray, size: int, out_d: np.ndarray, out_p: np.ndarray) -> None:
    """Write the heap's pairs in (distance, position) order into out_d / out_p (the rest -1 / untouched)."""
    key = np.empty(size, dtype=np.int64)
    for i in range(size):
        key[i] = (np.int64(hd[i]) << 40) | hp[i]
    key.sort()
    for i in range(size):
        out_d[i] = np.int32(key[i] >> 40)
        out_p[i] = key[i] & ((np.int64(1) << 40) - 1)


@intrinsic
def _ctpop(typingctx, x):  # type: ignore[no-untyped-def]
    """LLVM's ctpop on a uint64 (the popcnt instruction, vectorised where the loop allows)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.ctpop(args[0])

    return sig, codegen


@nb.njit(cache=True, inline="always")
def _popcnt(x: np.uint64) -> Any:
    return np.int32(_ctpop(x))  # type: ignore[call-arg]


@nb.njit(cache=True, inline="always")
def dist_words(words: np.ndarray, i: int, q: np.ndarray) -> int:
    """Hamming distance between row i of the words array and the query words."""
    d = 0
    for w in range(q.shape[0]):
        d += _popcnt(words[i, w] ^ q[w])
    return d


@nb.njit(cache=True)
def _block_dist(words: np.ndarray, start: int, stop: int, q: np.ndarray, out: np.ndarray) -> None:
    nw = q.shape[0]
    if nw == 1:
        q0 = q[0]
        flat = words.reshape(-1)[start:stop]
        for i in range(flat.shape[0]):
            out[i] = _popcnt(flat[i] ^ q0)
    elif nw == 2:
        q0 = q[0]
        q1 = q[1]
        flat = words.reshape(-1)[2 * start:2 * stop]
        for i in range(0, flat.shape[0] // 2):
            out[i] = _popcnt(flat[2 * i] ^ q0) + _popcnt(flat[2 * i + 1] ^ q1)
    else:
        for i in range(start, stop):
            d = 0
            for w in range(nw):
                d += _popcnt(words[i, w] ^ q[w])
            out[i - start] = d


@nb.njit(cache=True)
def xor_floor(words: np.ndarray) -> int:
    """XOR of every word: one read of the codes with no other work, the memory floor of a scan."""
    acc = np.uint64(0)
    flat = words.reshape(-1)
    for i in range(flat.shape[0]):
        acc ^= flat[i]
    return int(acc & np.uint64(1))


@nb.njit(cache=True)
def _block_below(words: np.ndarray, start: int, stop: int, q: np.ndarray, t: Any) -> Any:
    """How many codes of the block lie below distance t (a vectorised popcount + compare + sum, no stores)."""
    nw = q.shape[0]
    c = np.int32(0)
    t = np.int32(t)
    if nw == 1:
        q0 = q[0]
        flat = words.reshape(-1)[start:stop]
        for i in range(flat.shape[0]):
            c += np.int32(_popcnt(flat[i] ^ q0) < t)
    elif nw == 2:
        q0 = q[0]
        q1 = q[1]
        flat = words.reshape(-1)[2 * start:2 * stop]
        for i in range(0, flat.shape[0], 2):
            c += np.int32((_popcnt(flat[i] ^ q0) + _popcnt(flat[i + 1] ^ q1)) < t)
    else:
        for i in range(start, stop):
            d = 0
            for w in range(nw):
                d += _popcnt(words[i, w] ^ q[w])
            c += d < t
    return c


@nb.njit(cache=True)
def scan_knn(words: np.ndarray, queries: np.ndarray, k: int, out_d: np.ndarray, out_p: np.ndarray) -> None:
    """Exact k-NN of every query row by a blocked flat scan; out_* are (nq, k), -1 / big where n < k.

    Per block of codes and query: one vectorised pass counts the codes below the current k-th distance; only a
    block with some recomputes their distances and offers them to the heap (rare once the heap is full)."""
    n = words.shape[0]
    nq = queries.shape[0]
    kk = min(k, n)
    hd = np.empty((nq, max(kk, 1)), dtype=np.int32)
    hp = np.empty((nq, max(kk, 1)), dtype=np.int64)
    sizes = np.zeros(nq, dtype=np.int64)
    thr = np.full(nq, 1 << 30, dtype=np.int64)  # offer only distances below this (k-th distance once full)
    buf = np.empty(BLOCK, dtype=np.int32)
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        done = True
        for qi in range(nq):
            if sizes[qi] < kk or thr[qi] > 0:
                done = False
        if done:
            break  # every query holds k codes at distance 0: later positions cannot enter
        for qi in range(nq):
            q = queries[qi]
            t = thr[qi]
            if sizes[qi] == kk and _block_below(words, start, stop, q, t) == 0:
                continue
            _block_dist(words, start, stop, q, buf)
            for j in range(stop - start):
                if buf[j] < t:
                    s = heap_push(hd[qi], hp[qi], sizes[qi], kk, buf[j], start + j)
                    sizes[qi] = s
                    if s == kk:
                        t = hd[qi, 0]
            thr[qi] = t
    for qi in range(nq):
        heap_sorted(hd[qi], hp[qi], sizes[qi], out_d[qi], out_p[qi])


@nb.njit(cache=True)
def grow_hits(dst: np.ndarray, pos: np.ndarray, cnt: int, need: int) -> tuple[np.ndarray, np.ndarray]:
    """Hit buffers with room for ``need`` hits (at least doubled), the first ``cnt`` kept. Callers make room
    before a block / bucket / group, because rebinding numba arrays inside a per-code loop costs a lot."""
    cap = max(2 * dst.shape[0], need)
    dst2 = np.empty(cap, dtype=np.int32)
    pos2 = np.empty(cap, dtype=np.int64)
    dst2[:cnt] = dst[:cnt]
    pos2[:cnt] = pos[:cnt]
    return dst2, pos2


@nb.njit(cache=True)
def scan_radius(words: np.ndarray, q: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """All (distances, positions) within Hamming distance r of one query, ordered by (distance, position)."""
    n = words.shape[0]
    pos = np.empty(1024, dtype=np.int64)
    dst = np.empty(1024, dtype=np.int32)
    cnt = 0
    buf = np.empty(BLOCK, dtype=np.int32)
    bd = np.empty(BLOCK, dtype=np.int32)
    bp = np.empty(BLOCK, dtype=np.int64)
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        if _block_below(words, start, stop, q, r + 1) == 0:
            continue
        _block_dist(words, start, stop, q, buf)
        m = 0
        for j in range(stop - start):  # the block's hits first, so the buffers are not rebound per code
            if buf[j] <= r:
                bd[m] = buf[j]
                bp[m] = start + j
                m += 1
        if cnt + m > dst.shape[0]:
            dst, pos = grow_hits(dst, pos, cnt, cnt + m)
        dst[cnt:cnt + m] = bd[:m]
        pos[cnt:cnt + m] = bp[:m]
        cnt += m
    return order_hits(dst[:cnt], pos[:cnt], r)


@nb.njit(cache=True)
def order_hits(dst: np.ndarray, pos: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Hits with distances in 0..r reordered by (distance, position): a counting sort on the distance after
    sorting by position (already sorted when they came from a scan)."""
    cnt = dst.shape[0]
    sorted_pos = True
    for i in range(1, cnt):
        if pos[i] < pos[i - 1]:
            sorted_pos = False
            break
    if not sorted_pos:
        o = np.argsort(pos)
        pos = pos[o]
        dst = dst[o]
    counts = np.zeros(r + 2, dtype=np.int64)
    for i in range(cnt):
        counts[dst[i] + 1] += 1
    for v in range(1, r + 2):
        counts[v] += counts[v - 1]
    out_p = np.empty(cnt, dtype=np.int64)
    out_d = np.empty(cnt, dtype=np.int32)
    for i in range(cnt):
        j = counts[dst[i]]
        counts[dst[i]] += 1
        out_p[j] = pos[i]
        out_d[j] = dst[i]
    return out_d, out_p


def flat_knn(words: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact (distances int32 (nq, k), positions int64 (nq, k)) by the compiled scan; empty slots -1 / int32 max."""
    nq = queries.shape[0]
    out_d = np.full((nq, k), np.iinfo(np.int32).max, dtype=np.int32)
    out_p = np.full((nq, k), -1, dtype=np.int64)
    if words.shape[0]:
        scan_knn(words, queries, int(k), out_d, out_p)
    return out_d, out_p


def flat_radius(words: np.ndarray, query: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact (distances, positions) within r of one query word row, by the compiled scan."""
    if r < 0 or not words.shape[0]:
        return np.zeros(0, np.int32), np.zeros(0, np.int64)
    return scan_radius(words, query, int(r))
