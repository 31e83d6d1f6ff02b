"""Multi-index hashing, compiled: exact Hamming k-NN and radius search (Norouzi, Punjani, Fleet, TPAMI 2014).

A b-bit code is cut into m disjoint substrings of L_j bits; table j is a direct-address table over the 2^L_j
values of substring j (``offsets`` into ``members``, members of a bucket in ascending position). Substrings are
sets of bit indices, not runs: a greedy pass over the bits' correlation (``decorrelating_permutation``) puts
strongly correlated bits into different substrings, so that the bits inside one substring are as independent
as they can be and the buckets of learned codes (correlated bits, crowded buckets) fill more evenly.

Search grows a radius r' = 0, 1, 2, ...: step r' = s m + j probes, in table j only, every bucket whose key
differs from the query's substring in exactly s bits. After step r' every code within Hamming distance r' has
been seen (pigeonhole, generalised: if the first j+1 substrings all differ in more than s bits and the rest in
more than s-1, the distance is at least s m + j + 1). So

- radius r: run steps 0..r and keep candidates at distance <= r;
- k-NN: stop after the first step r' at which the k-th best candidate found lies within r' (exact stopping
  rule; ties by position are exact too, as every code at distance <= r' has been seen).

Members of a bucket ascend by position and lie at distance >= s, so once the k-th best is within s and the
next member's position is past it, the rest of the bucket is skipped (archives full of duplicate codes stop
after k of them). A code sits in one bucket per table, so it can be met up to m times. It is counted only at the first step
that reaches it, min_j (d_j m + j) where d_j is its substring distance in table j, which the kernel recomputes
from the code (no per-query visited set, no allocation proportional to n).

m follows the paper's rule m ~ b / log2(n) (substrings of about log2(n) bits, so about one code per bucket),
with substrings of at most ``MAX_SUB_BITS`` bits so that a direct table stays small. When a query would check
more candidates and buckets than ``budget`` (a fraction of n), the scan is cheaper: the query falls back to
the compiled flat scan, which is exact as well, and the stats say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from rsir.index.kernels import (
    _popcnt,
    as_words,
    grow_hits,
    heap_push,
    heap_sorted,
    order_hits,
    scan_knn,
    scan_radius,
)

MAX_SUB_BITS = 24


def choose_m(bits: int, n: int) -> int:
    """Substrings for n codes of ``bits`` bits: round(b / log2 n), at least ceil(b / MAX_SUB_BITS), at most b."""
    m = round(bits / math.log2(max(n, 2)))
    return int(min(bits, max(m, math.ceil(bits / MAX_SUB_BITS), 1)))


def unpack_word_bits(words: np.ndarray, bits: int) -> np.ndarray:
    """(n, bits) uint8 of the word layout: column b is bit (b % 64) of word b // 64."""
    cols = np.arange(bits)
    return ((words[:, cols >> 6] >> (cols & 63).astype(np.uint64)) & np.uint64(1)).astype(np.uint8)


def decorrelating_permutation(words: np.ndarray, bits: int, m: int, sample: int = 50_000,
                              seed: int = 0) -> list[np.ndarray]:
    """Bit indices of each of m substrings, assigned greedily so correlated bits land in different substrings.

    Bits are taken in order of their total |correlation| with the others (most entangled first); each goes to
    the substring, among those with room left, whose bits it correlates least with (sum of |corr|). Constant
    bits have no correlation and fill the remaining room."""
    n = words.shape[0]
    lengths = [bits // m + (1 if j < bits % m else 0) for j in range(m)]
    rng = np.random.default_rng(seed)
    rows = words if n <= sample else words[np.sort(rng.choice(n, sample, replace=False))]
    x = unpack_word_bits(rows, bits).astype(np.float64)
    sd = x.std(axis=0)
    xc = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    corr = np.abs(xc.T @ xc) / max(x.shape[0], 1)
    np.fill_diagonal(corr, 0.0)
    order = np.argsort(-corr.sum(axis=1), kind="stable")
    groups: list[list[int]] = [[] for _ in range(m)]
    load = np.zeros((m, bits))  # load[j, b]: sum of |corr| between bit b and the bits of group j
    for b in order.tolist():
        room = [j for j in range(m) if len(groups[j]) < lengths[j]]
        j = min(room, key=lambda g: (load[g, b], len(groups[g]), g))
        groups[j].append(b)
        load[j] += corr[b]
    return [np.array(sorted(g), dtype=np.int64) for g in groups]


@nb.njit(cache=True)
def _sub_keys(words: np.ndarray, sub: np.ndarray, length: int) -> np.ndarray:
    n = words.shape[0]
    out = np.empty(n, dtype=np.uint32)
    for i in range(n):
        key = np.uint32(0)
        for t in range(length):
            b = sub[t]
            key = (key << np.uint32(1)) | np.uint32((words[i, b >> 6] >> np.uint64(b & 63)) & np.uint64(1))
        out[i] = key
    return out


@nb.njit(cache=True)
def _query_key(q: np.ndarray, sub: np.ndarray, length: int) -> np.int64:
    key = np.int64(0)
    for t in range(length):
        b = sub[t]
        key = (key << 1) | np.int64((q[b >> 6] >> np.uint64(b & 63)) & np.uint64(1))
    return key


@nb.njit(cache=True)
def _fill_table(keys: np.ndarray, nbuckets: int, offsets: np.ndarray, members: np.ndarray) -> None:
    """Counting sort of positions by key: offsets (nbuckets + 1), members in ascending position per bucket."""
    for v in range(nbuckets + 1):
        offsets[v] = 0
    for i in range(keys.shape[0]):
        offsets[keys[i] + 1] += 1
    for v in range(nbuckets):
        offsets[v + 1] += offsets[v]
    fill = offsets[:nbuckets].copy()
    for i in range(keys.shape[0]):
        members[fill[keys[i]]] = i
        fill[keys[i]] += 1


@nb.njit(cache=True)
def _first_step(words: np.ndarray, x: int, q: np.ndarray, masks: np.ndarray) -> int:
    """min_j (substring distance in table j) * m + j: the step at which MIH first meets code x."""
    m = masks.shape[0]
    best = 1 << 30
    for j in range(m):
        d = 0
        for w in range(q.shape[0]):
            d += _popcnt((words[x, w] ^ q[w]) & masks[j, w])
        s = d * m + j
        if s < best:
            best = s
    return best


@nb.njit(cache=True)
def _probe_step(words: np.ndarray, q: np.ndarray, step: int, m: int, subs: np.ndarray, lengths: np.ndarray,
                masks: np.ndarray, qkeys: np.ndarray, tbase: np.ndarray, offsets: np.ndarray,
                members: np.ndarray, combo: np.ndarray, stats: np.ndarray, mode: int, limit: int,
                hd: np.ndarray, hp: np.ndarray, size: int, k: int,
                rd: np.ndarray, rp: np.ndarray, rcnt: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """One MIH step (table step % m at substring radius step // m). mode 0: k-NN into the heap (hd, hp, size);
    mode 1: radius ``limit`` into the growing (rd, rp, rcnt). Returns (size, rcnt, rd, rp)."""
    j = step % m
    s = step // m
    L = lengths[j]
    if s > L:
        return size, rcnt, rd, rp
    qk = qkeys[j]
    base = tbase[j]
    for i in range(s):
        combo[i] = i
    while True:
        flip = np.int64(0)
        for i in range(s):
            flip |= np.int64(1) << combo[i]
        key = qk ^ flip
        lo = offsets[base + key]
        hi = offsets[base + key + 1]
        stats[1] += 1
        if mode == 1 and rcnt + (hi - lo) > rd.shape[0]:
            rd, rp = grow_hits(rd, rp, rcnt, rcnt + (hi - lo))
        for e in range(lo, hi):
            x = members[e]
            if mode == 0 and size == k and hd[0] <= s and x > hp[0]:
                break  # members ascend by position and lie at >= s: none of the rest can enter the heap
            d = 0
            for w in range(q.shape[0]):
                d += _popcnt(words[x, w] ^ q[w])
            stats[0] += 1
            if mode == 0:
                if size == k and (d > hd[0] or (d == hd[0] and x > hp[0])):
                    continue
                if _first_step(words, x, q, masks) < step:
                    continue
                size = heap_push(hd, hp, size, k, d, x)
            else:
                if d > limit or _first_step(words, x, q, masks) < step:
                    continue
                rd[rcnt] = d  # room was made before the bucket: no rebinding per member
                rp[rcnt] = x
                rcnt += 1
        # next combination of s bit positions out of L
        i = s - 1
        while i >= 0 and combo[i] == L - s + i:
            i -= 1
        if i < 0:
            break
        combo[i] += 1
        for t in range(i + 1, s):
            combo[t] = combo[t - 1] + 1
    return size, rcnt, rd, rp


@nb.njit(cache=True)
def mih_knn(words: np.ndarray, queries: np.ndarray, k: int, m: int, subs: np.ndarray, lengths: np.ndarray,
            masks: np.ndarray, tbase: np.ndarray, offsets: np.ndarray, members: np.ndarray, budget: int,
            out_d: np.ndarray, out_p: np.ndarray, stats: np.ndarray) -> None:
    """Exact k-NN per query row; stats[qi] = (candidates checked, buckets probed, last step, fell back to scan)."""
    n = words.shape[0]
    kk = min(k, n)
    maxlen = 0
    for j in range(m):
        maxlen = max(maxlen, lengths[j])
    last = m * (maxlen + 1)
    combo = np.empty(maxlen + 1, dtype=np.int64)
    qkeys = np.empty(m, dtype=np.int64)
    hd = np.empty(max(kk, 1), dtype=np.int32)
    hp = np.empty(max(kk, 1), dtype=np.int64)
    rd = np.empty(1, dtype=np.int32)
    rp = np.empty(1, dtype=np.int64)
    for qi in range(queries.shape[0]):
        q = queries[qi]
        for j in range(m):
            qkeys[j] = _query_key(q, subs[j], lengths[j])
        st = stats[qi]
        size = 0
        step = 0
        fell_back = False
        while step < last:
            size, _, rd, rp = _probe_step(words, q, step, m, subs, lengths, masks, qkeys, tbase, offsets, members,
                                          combo, st, 0, 0, hd, hp, size, kk, rd, rp, 0)
            if size == kk and hd[0] <= step:
                break
            if st[0] + st[1] > budget:
                fell_back = True
                break
            step += 1
        st[2] = step
        if fell_back:
            st[3] = 1
            scan_knn(words, queries[qi:qi + 1], kk, out_d[qi:qi + 1], out_p[qi:qi + 1])
        else:
            heap_sorted(hd, hp, size, out_d[qi], out_p[qi])


@nb.njit(cache=True)
def mih_radius(words: np.ndarray, q: np.ndarray, r: int, m: int, subs: np.ndarray, lengths: np.ndarray,
               masks: np.ndarray, tbase: np.ndarray, offsets: np.ndarray, members: np.ndarray, budget: int,
               stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact hits within r, ordered by (distance, position); stats as for mih_knn."""
    maxlen = 0
    for j in range(m):
        maxlen = max(maxlen, lengths[j])
    last = min(r + 1, m * (maxlen + 1))
    combo = np.empty(maxlen + 1, dtype=np.int64)
    qkeys = np.empty(m, dtype=np.int64)
    for j in range(m):
        qkeys[j] = _query_key(q, subs[j], lengths[j])
    hd = np.empty(1, dtype=np.int32)
    hp = np.empty(1, dtype=np.int64)
    rd = np.empty(1024, dtype=np.int32)
    rp = np.empty(1024, dtype=np.int64)
    rcnt = 0
    for step in range(last):
        _, rcnt, rd, rp = _probe_step(words, q, step, m, subs, lengths, masks, qkeys, tbase, offsets, members,
                                      combo, stats, 1, r, hd, hp, 0, 1, rd, rp, rcnt)
        stats[2] = step
        if stats[0] + stats[1] > budget:
            stats[3] = 1
            return scan_radius(words, q, r)
    return order_hits(rd[:rcnt], rp[:rcnt], r)


def probes_upto(lengths: list[int], r: int) -> int:
    """Buckets a radius-r MIH query probes: sum over steps 0..r of C(L_j, s)."""
    m = len(lengths)
    return sum(math.comb(lengths[t % m], t // m) for t in range(r + 1) if t // m <= lengths[t % m])


@dataclass
class MIHTables:
    """The m direct-address tables over a words array (see the module docstring)."""

    words: np.ndarray
    bits: int
    m: int
    subs: np.ndarray  # (m, Lmax) bit indices, padded with -1
    lengths: np.ndarray  # (m,)
    masks: np.ndarray  # (m, W) uint64: the bits of each substring
    tbase: np.ndarray  # (m,) start of each table in offsets
    offsets: np.ndarray
    members: np.ndarray
    budget_fraction: float = 1 / 16

    @classmethod
    def build(cls, words: np.ndarray, bits: int, m: int | None = None, permute: bool = True,
              seed: int = 0) -> MIHTables:
        n = words.shape[0]
        m = int(m) if m else choose_m(bits, n)
        if not 1 <= m <= bits or math.ceil(bits / m) > 32:
            raise ValueError(f"m must be in {math.ceil(bits / 32)}..{bits} for {bits} bits, got {m}")
        if permute and n > 1:
            groups = decorrelating_permutation(words, bits, m, seed=seed)
        else:
            lengths0 = [bits // m + (1 if j < bits % m else 0) for j in range(m)]
            starts = np.cumsum([0] + lengths0[:-1])
            groups = [np.arange(a, a + L, dtype=np.int64) for a, L in zip(starts, lengths0, strict=True)]
        lengths = np.array([g.size for g in groups], dtype=np.int64)
        subs = np.full((m, int(lengths.max())), -1, dtype=np.int64)
        masks = np.zeros((m, words.shape[1]), dtype=np.uint64)
        for j, g in enumerate(groups):
            subs[j, :g.size] = g
            for b in g.tolist():
                masks[j, b >> 6] |= np.uint64(1) << np.uint64(b & 63)
        sizes = (1 << lengths) + 1
        tbase = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        off_dtype: type = np.uint32 if m * n < 2**32 else np.int64
        mem_dtype = np.int32 if n < 2**31 else np.int64
        offsets: np.ndarray = np.empty(int(sizes.sum()), dtype=off_dtype)
        members = np.empty(m * n, dtype=mem_dtype)
        for j in range(m):
            keys = _sub_keys(words, subs[j], int(lengths[j]))
            nb_ = 1 << int(lengths[j])
            _fill_table(keys, nb_, offsets[tbase[j]:tbase[j] + nb_ + 1], members[j * n:(j + 1) * n])
            offsets[tbase[j]:tbase[j] + nb_ + 1] += j * n  # members of table j start at j n
        return cls(words, bits, m, subs, lengths, masks, tbase, offsets, members)

    @property
    def nbytes(self) -> int:
        """Memory of the tables (not the codes)."""
        return int(self.offsets.nbytes + self.members.nbytes)

    def budget(self) -> int:
        """Candidates + buckets a query may cost before the scan answers it instead."""
        return int(min(2**62, max(256, self.words.shape[0] * self.budget_fraction)))

    def knn(self, qwords: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(distances (nq, k), positions (nq, k), stats (nq, 4): candidates, buckets, last step, fell back)."""
        nq = qwords.shape[0]
        out_d = np.full((nq, k), np.iinfo(np.int32).max, dtype=np.int32)
        out_p = np.full((nq, k), -1, dtype=np.int64)
        stats = np.zeros((nq, 4), dtype=np.int64)
        if self.words.shape[0]:
            mih_knn(self.words, qwords, int(k), self.m, self.subs, self.lengths, self.masks, self.tbase,
                    self.offsets, self.members, self.budget(), out_d, out_p, stats)
        return out_d, out_p, stats

    def radius(self, qword: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(distances, positions, stats (4,)) of every code within r of one query word row."""
        stats = np.zeros(4, dtype=np.int64)
        if r < 0 or not self.words.shape[0]:
            return np.zeros(0, np.int32), np.zeros(0, np.int64), stats
        if probes_upto([int(x) for x in self.lengths], int(r)) > self.budget():
            stats[3] = 1
            d, p = scan_radius(self.words, qword, int(r))
            return d, p, stats
        d, p = mih_radius(self.words, qword, int(r), self.m, self.subs, self.lengths, self.masks, self.tbase,
                          self.offsets, self.members, self.budget(), stats)
        return d, p, stats

    def occupancy(self) -> dict[str, float]:
        """Bucket statistics of the tables: mean non-empty bucket size and the share of codes in the fullest 1%."""
        n = self.words.shape[0]
        out = []
        for j in range(self.m):
            nb_ = 1 << int(self.lengths[j])
            sizes = np.diff(self.offsets[self.tbase[j]:self.tbase[j] + nb_ + 1].astype(np.int64))
            nz = np.sort(sizes[sizes > 0])[::-1]
            top = nz[:max(1, nz.size // 100)].sum() / max(n, 1)
            out.append((nz.size, n / max(nz.size, 1), top, int(nz[0]) if nz.size else 0))
        a = np.array(out, dtype=np.float64)
        return {"nonempty_buckets": float(a[:, 0].mean()), "mean_bucket": float(a[:, 1].mean()),
                "top1pct_share": float(a[:, 2].mean()), "max_bucket": float(a[:, 3].max())}


__all__ = ["MIHTables", "as_words", "choose_m", "decorrelating_permutation"]
