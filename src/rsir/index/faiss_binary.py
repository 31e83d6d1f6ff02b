"""HammingIndex: packed binary codes searched by Hamming distance, three kinds.

- ``flat`` (default): exact linear scan with faiss ``IndexBinaryFlat`` (the codes live only inside faiss).
- ``ivf``: faiss ``IndexBinaryIVF`` (nlist Hamming k-means cells, ``nprobe`` visited per query), approximate,
  for archives beyond ~10M codes; trained on a sample of the first ``add``.
- ``mih``: multi-index hashing (rsir.index.mih), exact, hash-bucket lookups; fastest for small radii.

Removal: flat rebuilds the faiss array without the removed rows (order kept), ivf removes by faiss id
(internal serial numbers via ``add_with_ids``), mih rebuilds its tables lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np

from rsir.index.base import Index, IndexError_, IndexFileError, check_codes, load_npy, sort_ties
from rsir.index.factory import FAISS_KINDS as KINDS
from rsir.index.mih import MultiIndexHashing


def default_nlist(n: int) -> int:
    """IVF cells for ``n`` training codes: 4 sqrt(n) (the faiss guideline), at most n / 39 so that k-means has
    the 39 points per centroid faiss asks for, and at most 65,536."""
    return max(1, min(int(4 * np.sqrt(max(n, 1))), n // 39, 65536))


def few_query_search(fn: Any, nq: int) -> Any:
    """Call ``fn()`` (a faiss search of ``nq`` queries) with at most ``nq`` OpenMP threads. faiss's binary searches
    parallelise over queries (one OpenMP region per block of 65,536 codes), so a batch smaller than the thread
    count gains nothing from the other threads and pays a fork/join per block: on a busy machine one query took
    ~100x longer with 2 threads than with 1 (bench/overhead_bench.py). The caller's setting is restored."""
    prev = faiss.omp_get_max_threads()
    if nq >= prev:
        return fn()
    faiss.omp_set_num_threads(max(1, nq))
    try:
        return fn()
    finally:
        faiss.omp_set_num_threads(prev)


def _as_bytes_array(data: np.ndarray) -> bytes:
    return np.ascontiguousarray(data).tobytes()


class HammingIndex(Index):
    """Exact (flat, mih) or approximate (ivf) Hamming search over packed uint8 codes of ``dim`` bits."""

    backend: ClassVar[str] = "hamming"

    def __init__(self, dim: int, kind: str = "flat", nlist: int | None = None, nprobe: int = 16,
                 mih_m: int | None = None, train_size: int = 100_000, seed: int = 0) -> None:
        if dim <= 0 or dim % 8:
            raise IndexError_(f"Hamming index needs a positive number of bits divisible by 8, got {dim}")
        if kind not in KINDS:
            raise IndexError_(f"unknown Hamming index kind {kind!r} (choose from {', '.join(KINDS)})")
        super().__init__("hamming", dim)
        self.kind = kind
        self.nbytes = dim // 8
        self.nlist = nlist
        self._nprobe = int(nprobe)
        self.mih_m = mih_m
        self.train_size = int(train_size)
        self.seed = int(seed)
        self._flat: Any = faiss.IndexBinaryFlat(dim) if kind == "flat" else None
        self._ivf: Any = None
        self._codes = np.zeros((0, self.nbytes), dtype=np.uint8)  # ivf / mih keep their own copy
        self._serials = np.zeros(0, dtype=np.int64)  # ivf: faiss id of each position (ascending)
        self._next_serial = 0
        self._mih: MultiIndexHashing | None = None

    # -- parameters --
    @property
    def nprobe(self) -> int:
        """IVF cells visited per query."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._nprobe = int(value)
        if self._ivf is not None:
            self._ivf.nprobe = self._nprobe

    @property
    def faiss_index(self) -> Any:
        """The underlying faiss index (flat or ivf), or None for mih."""
        return self._flat if self.kind == "flat" else self._ivf

    def codes(self) -> np.ndarray:
        """All stored codes (n, dim/8) in position order (a read-only view for flat)."""
        if self.kind == "flat":
            n = self._flat.ntotal
            if n == 0:
                return np.zeros((0, self.nbytes), dtype=np.uint8)
            view = faiss.rev_swig_ptr(self._flat.xb.data(), n * self.nbytes).reshape(n, self.nbytes)
            view.flags.writeable = False
            return view
        return self._codes

    # -- Index hooks --
    def _check_vectors(self, vectors: np.ndarray) -> np.ndarray:
        return check_codes(vectors, self.dim)

    def _train_ivf(self, codes: np.ndarray) -> None:
        n = codes.shape[0]
        nlist = self.nlist or default_nlist(n)
        if n < nlist:
            raise IndexError_(f"IVF with nlist={nlist} needs at least {nlist} codes in the first add, got {n}")
        self.nlist = nlist
        quantizer = faiss.IndexBinaryFlat(self.dim)
        ivf = faiss.IndexBinaryIVF(quantizer, self.dim, nlist)
        self._quantizer = quantizer  # faiss does not own it: keep it alive as long as the IVF index
        rng = np.random.default_rng(self.seed)
        sample = codes if n <= self.train_size else codes[np.sort(rng.choice(n, self.train_size, replace=False))]
        ivf.train(sample)
        ivf.nprobe = self._nprobe
        self._ivf = ivf

    def _add(self, vectors: np.ndarray) -> None:
        if self.kind == "flat":
            self._flat.add(vectors)
            return
        if self.kind == "ivf":
            if self._ivf is None:
                self._train_ivf(vectors)
            serials = np.arange(self._next_serial, self._next_serial + vectors.shape[0], dtype=np.int64)
            self._ivf.add_with_ids(vectors, serials)
            self._serials = np.concatenate([self._serials, serials])
            self._next_serial += vectors.shape[0]
        self._codes = vectors.copy() if not self._codes.shape[0] else np.concatenate([self._codes, vectors])
        self._mih = None

    def _remove_positions(self, positions: np.ndarray) -> None:
        keep = np.ones(len(self), dtype=bool)
        keep[positions] = False
        if self.kind == "flat":
            rest = np.ascontiguousarray(self.codes()[keep])
            self._flat.reset()
            self._flat.add(rest)
            return
        if self.kind == "ivf":
            removed = self._ivf.remove_ids(faiss.IDSelectorBatch(self._serials[positions]))
            if removed != positions.size:
                raise RuntimeError(f"faiss removed {removed} of {positions.size} codes")
            self._serials = self._serials[keep]
        self._codes = self._codes[keep]
        self._mih = None

    def _mih_tables(self) -> MultiIndexHashing:
        if self._mih is None:
            self._mih = MultiIndexHashing(self._codes, self.dim, self.mih_m)
        return self._mih

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        nq = queries.shape[0]
        if len(self) == 0:
            return np.full((nq, k), self.missing_distance, np.int32), np.full((nq, k), -1, np.int64)
        if self.kind == "mih":
            missing = self.missing_distance
            mih = self._mih_tables()
            dist = np.full((nq, k), missing, np.int32)
            pos = np.full((nq, k), -1, np.int64)
            for i in range(nq):
                d, p, _ = mih.knn(queries[i], k)
                dist[i, :d.size], pos[i, :p.size] = d, p
            return dist, pos
        index = self._flat if self.kind == "flat" else self._ivf
        dist, labels = few_query_search(lambda: index.search(queries, k), nq)
        if self.kind == "ivf":
            labels = self._labels_to_positions(labels)
        if nq == 1 and k <= 256:
            # the common single query: a plain sort of (distance, position) pairs; right after faiss has streamed
            # the codes through the caches, a few small numpy calls cost ~4x this (bench/overhead_bench.py)
            pairs = sorted(zip(dist[0].tolist(), labels[0].tolist(), strict=True))
            if min(q for _, q in pairs) >= 0:  # every slot found (else the general path below)
                return (np.array([[d for d, _ in pairs]], dtype=np.int32),
                        np.array([[q for _, q in pairs]], dtype=np.int64))
        if labels.min() < 0:
            dist = np.where(labels < 0, self.missing_distance, dist).astype(np.int32)
            return sort_ties(dist, labels)
        # one argsort on the combined integer key (distance, position): ties in insertion order, cheaply
        key = dist.astype(np.int64) * (int(labels.max()) + 1) + labels
        order = np.argsort(key, axis=1)
        rows = np.arange(nq)[:, None]
        return dist[rows, order], labels[rows, order]

    def _labels_to_positions(self, labels: np.ndarray) -> np.ndarray:
        found = labels >= 0
        pos = np.searchsorted(self._serials, np.where(found, labels, 0))
        return np.where(found, pos, -1).astype(np.int64)

    def _range_search(self, queries: np.ndarray, radius: float) -> list[tuple[np.ndarray, np.ndarray]]:
        r = int(np.floor(radius))
        if len(self) == 0 or r < 0:
            return [(np.zeros(0, np.int32), np.zeros(0, np.int64)) for _ in range(queries.shape[0])]
        if self.kind == "mih":
            mih = self._mih_tables()
            return [mih.range_search(q, r) for q in queries]
        index = self._flat if self.kind == "flat" else self._ivf
        # faiss keeps distances strictly below its radius; rsir's radius is inclusive
        lims, dist, labels = few_query_search(lambda: index.range_search(queries, r + 1), queries.shape[0])
        out = []
        for i in range(queries.shape[0]):
            d = dist[lims[i]:lims[i + 1]].astype(np.int32)
            p = labels[lims[i]:lims[i + 1]].astype(np.int64)
            if self.kind == "ivf":
                p = self._labels_to_positions(p)
            order = np.lexsort((p, d))
            out.append((d[order], p[order]))
        return out

    def _get_positions(self, positions: np.ndarray) -> np.ndarray:
        return np.array(self.codes()[positions], dtype=np.uint8)

    def _stored_count(self) -> int:
        if self.kind == "flat":
            return int(self._flat.ntotal)
        return int(self._codes.shape[0])

    # -- persistence --
    def _state(self) -> tuple[dict[str, Any], dict[str, bytes | np.ndarray]]:
        params = {"kind": self.kind, "nlist": self.nlist, "nprobe": self._nprobe, "mih_m": self.mih_m,
                  "train_size": self.train_size, "seed": self.seed}
        files: dict[str, bytes | np.ndarray] = {"codes.npy": np.ascontiguousarray(self.codes())}
        if self.kind == "ivf" and self._ivf is not None:
            files["ivf.faiss"] = _as_bytes_array(faiss.serialize_index_binary(self._ivf))
            files["serials.npy"] = self._serials
            params["next_serial"] = self._next_serial
        return params, files

    @classmethod
    def _from_state(cls, params: dict[str, Any], path: Path, manifest: dict[str, Any]) -> Index:
        index = cls(int(manifest["dim"]), kind=params.get("kind", params.get("mode", "flat")), nlist=params.get("nlist"),
                    nprobe=int(params.get("nprobe", 16)), mih_m=params.get("mih_m"),
                    train_size=int(params.get("train_size", 100_000)), seed=int(params.get("seed", 0)))
        codes = load_npy(path / "codes.npy")
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != index.nbytes:
            raise IndexFileError(f"{path}: codes.npy has {codes.dtype} {codes.shape}, expected (n, {index.nbytes})")
        if index.kind == "flat":
            index._flat.add(np.ascontiguousarray(codes))
        else:
            index._codes = codes
        if index.kind == "ivf" and (path / "ivf.faiss").exists():
            raw = np.frombuffer((path / "ivf.faiss").read_bytes(), dtype=np.uint8)
            try:
                index._ivf = faiss.deserialize_index_binary(raw)
            except RuntimeError as e:
                raise IndexFileError(f"{path}/ivf.faiss: damaged faiss index ({e})") from None
            index._ivf.nprobe = index._nprobe
            index._serials = load_npy(path / "serials.npy").astype(np.int64)
            index._next_serial = int(params.get("next_serial", index._serials.shape[0]))
            if index._ivf.ntotal != codes.shape[0]:
                raise IndexFileError(f"{path}: ivf.faiss holds {index._ivf.ntotal} codes, codes.npy {codes.shape[0]}")
        return index
