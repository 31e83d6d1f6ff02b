"""Exact IVF over Hamming codes: coarse centroids, per-member distance to its centroid, triangle-inequality pruning.

Build: ``nlist`` binary centroids by k-majority (Hamming k-means: assign to the nearest centroid, each centroid
bit becomes the majority bit of its members) on a sample, then every code goes to its nearest centroid. The
codes are stored once more in list order, and inside a list grouped by their distance v to the centroid
(``group`` offsets per (list, v)), members of a group in ascending position.

Search: for a query q, d(q, c) for every centroid c. For a member x of c's list at d(x, c) = v, the triangle
inequality gives d(q, x) >= |d(q, c) - v|. Lists are visited by ascending d(q, c); a list whose every group
has |d(q, c) - v| above the current k-th distance (the radius, for a range query) is skipped without touching
its members, and inside a visited list only the groups with |d(q, c) - v| within the bound are read; a group
ascends by position, so it is left as soon as the k-th best is within |d(q, c) - v| and the next member's
position is past the k-th's. No step
guesses: a skipped member cannot be closer than the bound, so the result is exact (ties by position: a member
at exactly the bound is still read). Assignment to the nearest centroid only makes the bounds tight; any
assignment would be exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from rsir.index.kernels import _popcnt, grow_hits, heap_push, heap_sorted, order_hits


def default_nlist(n: int) -> int:
    """Lists for n codes: about sqrt(n), at least 1, at most n / 16 and 16,384."""
    return int(max(1, min(round(math.sqrt(max(n, 1))), n // 16 or 1, 16384)))


@nb.njit(cache=True)
def _dist(a: np.ndarray, i: int, b: np.ndarray, j: int) -> int:
    d = 0
    for w in range(a.shape[1]):
        d += _popcnt(a[i, w] ^ b[j, w])
    return d


@nb.njit(cache=True)
def assign(words: np.ndarray, cents: np.ndarray, lab: np.ndarray, dist: np.ndarray) -> None:
    """Nearest centroid (lowest index on ties) and its distance, for every code."""
    nc = cents.shape[0]
    for i in range(words.shape[0]):
        best = 1 << 30
        arg = 0
        for c in range(nc):
            d = _dist(words, i, cents, c)
            if d < best:
                best = d
                arg = c
        lab[i] = arg
        dist[i] = best


@nb.njit(cache=True)
def _majority(words: np.ndarray, lab: np.ndarray, nc: int, bits: int, old: np.ndarray) -> np.ndarray:
    counts = np.zeros((nc, bits), dtype=np.int64)
    sizes = np.zeros(nc, dtype=np.int64)
    for i in range(words.shape[0]):
        c = lab[i]
        sizes[c] += 1
        for b in range(bits):
            counts[c, b] += (words[i, b >> 6] >> np.uint64(b & 63)) & np.uint64(1)
    out = old.copy()
    for c in range(nc):
        if sizes[c] == 0:
            continue  # an empty cell keeps its centroid
        for w in range(out.shape[1]):
            out[c, w] = 0
        for b in range(bits):
            if 2 * counts[c, b] > sizes[c]:
                out[c, b >> 6] |= np.uint64(1) << np.uint64(b & 63)
    return out


def k_majority(words: np.ndarray, bits: int, nlist: int, iters: int = 8, seed: int = 0) -> np.ndarray:
    """nlist centroids (uint64 words) by Hamming k-means (k-majority) from distinct codes of ``words``."""
    rng = np.random.default_rng(seed)
    uniq = np.unique(words, axis=0)
    nlist = min(nlist, uniq.shape[0])
    cents = uniq[np.sort(rng.choice(uniq.shape[0], nlist, replace=False))].copy()
    lab = np.empty(words.shape[0], dtype=np.int64)
    dist = np.empty(words.shape[0], dtype=np.int32)
    for _ in range(iters):
        assign(words, cents, lab, dist)
        new = _majority(words, lab, nlist, bits, cents)
        if np.array_equal(new, cents):
            break
        cents = new
    return cents


@nb.njit(cache=True)
def _lay_out(lab: np.ndarray, dist: np.ndarray, nc: int, nv: int) -> tuple[np.ndarray, np.ndarray]:
    """Order of positions by (list, distance to centroid, position) and the (nc * nv + 1) group offsets."""
    n = lab.shape[0]
    group = np.zeros(nc * nv + 1, dtype=np.int64)
    for i in range(n):
        group[lab[i] * nv + dist[i] + 1] += 1
    for g in range(nc * nv):
        group[g + 1] += group[g]
    fill = group[:nc * nv].copy()
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        g = lab[i] * nv + dist[i]
        order[fill[g]] = i
        fill[g] += 1
    return order, group


@nb.njit(cache=True)
def _visit_order(dq: np.ndarray, nv: int) -> np.ndarray:
    """Lists by ascending distance from the query (counting sort, ties by list number)."""
    counts = np.zeros(nv + 1, dtype=np.int64)
    for c in range(dq.shape[0]):
        counts[dq[c] + 1] += 1
    for v in range(nv):
        counts[v + 1] += counts[v]
    out = np.empty(dq.shape[0], dtype=np.int64)
    for c in range(dq.shape[0]):
        out[counts[dq[c]]] = c
        counts[dq[c]] += 1
    return out


@nb.njit(cache=True)
def ivf_knn(lwords: np.ndarray, lpos: np.ndarray, cents: np.ndarray, group: np.ndarray, vlo: np.ndarray,
            vhi: np.ndarray, queries: np.ndarray, k: int, out_d: np.ndarray, out_p: np.ndarray,
            stats: np.ndarray) -> None:
    """Exact k-NN per query; stats[qi] = (members checked, lists visited, lists skipped, 0)."""
    n = lwords.shape[0]
    nc = cents.shape[0]
    nv = (group.shape[0] - 1) // nc
    kk = min(k, n)
    hd = np.empty(max(kk, 1), dtype=np.int32)
    hp = np.empty(max(kk, 1), dtype=np.int64)
    dq = np.empty(nc, dtype=np.int64)
    for qi in range(queries.shape[0]):
        q = queries[qi:qi + 1]
        for c in range(nc):
            dq[c] = _dist(cents, c, q, 0)
        size = 0
        for c in _visit_order(dq, nv):
            if vhi[c] < 0:
                continue  # empty list
            bound = hd[0] if size == kk else 1 << 30
            a = dq[c]
            lb = max(0, a - vhi[c], vlo[c] - a)
            if lb > bound:
                stats[qi, 2] += 1
                continue
            stats[qi, 1] += 1
            for v in range(max(vlo[c], a - bound), min(vhi[c], a + bound) + 1):
                if size == kk and abs(a - v) > hd[0]:
                    continue
                g = c * nv + v
                gap = abs(a - v)
                for e in range(group[g], group[g + 1]):
                    if size == kk and hd[0] <= gap and lpos[e] > hp[0]:
                        break  # a group ascends by position and lies at >= gap: the rest cannot enter
                    d = _dist(lwords, e, q, 0)
                    stats[qi, 0] += 1
                    if size < kk or d < hd[0] or (d == hd[0] and lpos[e] < hp[0]):
                        size = heap_push(hd, hp, size, kk, d, lpos[e])
        heap_sorted(hd, hp, size, out_d[qi], out_p[qi])


@nb.njit(cache=True)
def ivf_radius(lwords: np.ndarray, lpos: np.ndarray, cents: np.ndarray, group: np.ndarray, vlo: np.ndarray,
               vhi: np.ndarray, q: np.ndarray, r: int, stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact hits within r of one query (a (1, W) row), ordered by (distance, position)."""
    nc = cents.shape[0]
    nv = (group.shape[0] - 1) // nc
    rd = np.empty(1024, dtype=np.int32)
    rp = np.empty(1024, dtype=np.int64)
    cnt = 0
    for c in range(nc):
        if vhi[c] < 0:
            continue
        a = _dist(cents, c, q, 0)
        if max(0, a - vhi[c], vlo[c] - a) > r:
            stats[2] += 1
            continue
        stats[1] += 1
        for v in range(max(vlo[c], a - r), min(vhi[c], a + r) + 1):
            g = c * nv + v
            if cnt + group[g + 1] - group[g] > rd.shape[0]:
                rd, rp = grow_hits(rd, rp, cnt, cnt + group[g + 1] - group[g])
            for e in range(group[g], group[g + 1]):
                d = _dist(lwords, e, q, 0)
                stats[0] += 1
                if d <= r:
                    rd[cnt] = d  # room was made before the group: no rebinding per member
                    rp[cnt] = lpos[e]
                    cnt += 1
    return order_hits(rd[:cnt], rp[:cnt], r)


@dataclass
class ExactIVF:
    """Codes in list order with their positions, centroids, and per-(list, distance) group offsets."""

    lwords: np.ndarray
    lpos: np.ndarray
    cents: np.ndarray
    group: np.ndarray
    vlo: np.ndarray  # smallest member distance to the centroid per list (-1: empty)
    vhi: np.ndarray  # largest (-1: empty)
    bits: int

    @classmethod
    def build(cls, words: np.ndarray, bits: int, nlist: int | None = None, train_size: int = 65_536,
              seed: int = 0) -> ExactIVF:
        n = words.shape[0]
        nlist = int(nlist or default_nlist(n))
        rng = np.random.default_rng(seed)
        sample = words if n <= train_size else words[np.sort(rng.choice(n, train_size, replace=False))]
        cents = k_majority(np.ascontiguousarray(sample), bits, nlist, seed=seed)
        lab = np.empty(n, dtype=np.int64)
        dist = np.empty(n, dtype=np.int32)
        assign(words, cents, lab, dist)
        nc, nv = cents.shape[0], bits + 1
        order, group = _lay_out(lab, dist, nc, nv)
        sizes = np.diff(group).reshape(nc, nv)
        nonzero = sizes > 0
        any_ = nonzero.any(axis=1)
        vlo = np.where(any_, nonzero.argmax(axis=1), -1).astype(np.int64)
        vhi = np.where(any_, nv - 1 - nonzero[:, ::-1].argmax(axis=1), -1).astype(np.int64)
        pos_dtype = np.int32 if n < 2**31 else np.int64
        return cls(np.ascontiguousarray(words[order]), order.astype(pos_dtype), cents, group, vlo, vhi, bits)

    @property
    def nbytes(self) -> int:
        """Memory beyond the position-ordered codes: the list-ordered copy, positions, centroids, groups."""
        return int(self.lwords.nbytes + self.lpos.nbytes + self.cents.nbytes + self.group.nbytes)

    def knn(self, qwords: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nq = qwords.shape[0]
        out_d = np.full((nq, k), np.iinfo(np.int32).max, dtype=np.int32)
        out_p = np.full((nq, k), -1, dtype=np.int64)
        stats = np.zeros((nq, 4), dtype=np.int64)
        if self.lwords.shape[0]:
            ivf_knn(self.lwords, self.lpos, self.cents, self.group, self.vlo, self.vhi, qwords, int(k), out_d,
                    out_p, stats)
        return out_d, out_p, stats

    def radius(self, qword: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        stats = np.zeros(4, dtype=np.int64)
        if r < 0 or not self.lwords.shape[0]:
            return np.zeros(0, np.int32), np.zeros(0, np.int64), stats
        d, p = ivf_radius(self.lwords, self.lpos, self.cents, self.group, self.vlo, self.vhi, qword[None, :],
                          int(r), stats)
        return d, p, stats
