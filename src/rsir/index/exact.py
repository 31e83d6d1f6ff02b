"""ExactHammingIndex: exact Hamming k-NN and radius search in compiled code, with the structure chosen per regime.

Structures (``rsir index --kind``), all exact (identical ids and distances to a flat scan, ties by position):

- ``scan``: the compiled flat scan (rsir.index.kernels);
- ``mih``: multi-index hashing (rsir.index.mih_compiled), fastest where the k-th neighbour is near;
- ``exact-ivf``: IVF with triangle-inequality pruning (rsir.index.ivf_exact), for clustered codes;
- ``auto``: decided when the index is first searched or saved: each candidate structure is built and timed on a
  sample of the stored codes as queries (k = 10), and the fastest is kept. The decision, its timings and the
  MIH bucket occupancy go into the index manifest (``params.chosen``, ``params.auto``).

The structures are rebuilt from the codes when an index is loaded (the chosen one only), and dropped after
add/remove (rebuilt at the next search).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rsir.index.base import Index, IndexError_, IndexFileError, check_codes, load_npy
from rsir.index.kernels import as_words, flat_knn, flat_radius

STRUCTURES: tuple[str, ...] = ("scan", "mih", "exact-ivf")
#: below this many codes auto keeps the scan without measuring (every structure answers in well under 1 ms)
AUTO_MIN_N = 20_000


class ExactHammingIndex(Index):
    """Packed uint8 codes of ``dim`` bits, searched exactly by a compiled scan, MIH or exact IVF."""

    backend: ClassVar[str] = "hamming-exact"

    def __init__(self, dim: int, kind: str = "auto", mih_m: int | None = None, nlist: int | None = None,
                 permute: bool = True, seed: int = 0) -> None:
        if dim <= 0 or dim % 8:
            raise IndexError_(f"Hamming index needs a positive number of bits divisible by 8, got {dim}")
        if kind not in (*STRUCTURES, "auto"):
            raise IndexError_(f"unknown exact index kind {kind!r} (choose from {', '.join(STRUCTURES)}, auto)")
        super().__init__("hamming", dim)
        self.kind = kind
        self.nbytes = dim // 8
        self.mih_m = mih_m
        self.nlist = nlist
        self.permute = bool(permute)
        self.seed = int(seed)
        self._codes = np.zeros((0, self.nbytes), dtype=np.uint8)
        self._words: np.ndarray | None = None
        self._struct: Any = None
        self.chosen: str | None = None if kind == "auto" else kind
        self.auto_info: dict[str, Any] = {}
        self.last_stats: np.ndarray | None = None  # per query: candidates, buckets/lists, step/skipped, fell back

    # -- structures --
    def words(self) -> np.ndarray:
        """The codes as uint64 words (n, ceil(bits / 64))."""
        if self._words is None:
            self._words = as_words(self._codes) if self._codes.shape[0] else np.zeros((0, (self.nbytes + 7) // 8),
                                                                                          np.uint64)
        return self._words

    def _build(self, structure: str) -> Any:
        from rsir.index.ivf_exact import ExactIVF
        from rsir.index.mih_compiled import MIHTables

        if structure == "mih":
            return MIHTables.build(self.words(), self.dim, self.mih_m, permute=self.permute, seed=self.seed)
        if structure == "exact-ivf":
            return ExactIVF.build(self.words(), self.dim, self.nlist, seed=self.seed)
        return None

    def structure(self) -> str:
        """The structure in use, building it (and, for auto, choosing it) on first need."""
        if self.chosen is None:
            self.chosen, self._struct, self.auto_info = self._choose()
        elif self._struct is None and self.chosen != "scan" and len(self):
            self._struct = self._build(self.chosen)
        return self.chosen

    def _choose(self) -> tuple[str, Any, dict[str, Any]]:
        n = len(self)
        if n < AUTO_MIN_N:
            return "scan", None, {"rule": f"n < {AUTO_MIN_N}: the scan"}
        rng = np.random.default_rng(self.seed)
        queries = self.words()[np.sort(rng.choice(n, min(32, n), replace=False))]
        timings: dict[str, float] = {}
        built: dict[str, Any] = {}
        info: dict[str, Any] = {"rule": "fastest median k=10 query over 32 stored codes", "query_ms": timings}
        for s in STRUCTURES:
            t0 = time.perf_counter()
            built[s] = self._build(s)
            info[f"build_s_{s}"] = round(time.perf_counter() - t0, 3)
            timings[s] = round(self._time_knn(built[s], queries) * 1e3, 4)
            if s == "mih":
                info["mih_m"] = built[s].m
                info["mih_occupancy"] = built[s].occupancy()
                if timings[s] * 20 < timings["scan"]:
                    break  # MIH already 20x the scan: skip building the IVF
        best = min(timings, key=lambda s: timings[s])
        return best, built[best], info

    def _time_knn(self, struct: Any, queries: np.ndarray, k: int = 10) -> float:
        times = []
        for i in range(queries.shape[0]):
            t0 = time.perf_counter()
            if struct is None:
                flat_knn(self.words(), queries[i:i + 1], k)
            else:
                struct.knn(queries[i:i + 1], k)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    def describe(self) -> str:
        """One line: the structure in use and why (for `rsir index` output)."""
        s = self.structure()
        if self.kind != "auto":
            return s
        if "query_ms" not in self.auto_info:
            return f"auto -> {s} ({self.auto_info.get('rule', '')})"
        times = ", ".join(f"{k} {v:.3g} ms" for k, v in self.auto_info["query_ms"].items())
        return f"auto -> {s} (k=10 query: {times})"

    # -- Index hooks --
    def _check_vectors(self, vectors: np.ndarray) -> np.ndarray:
        return check_codes(vectors, self.dim)

    def _invalidate(self) -> None:
        self._words = None
        self._struct = None
        if self.kind == "auto":
            self.chosen = None

    def _add(self, vectors: np.ndarray) -> None:
        self._codes = vectors.copy() if not self._codes.shape[0] else np.concatenate([self._codes, vectors])
        self._invalidate()

    def _remove_positions(self, positions: np.ndarray) -> None:
        keep = np.ones(len(self), dtype=bool)
        keep[positions] = False
        self._codes = self._codes[keep]
        self._invalidate()

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        qw = as_words(queries)
        if len(self) == 0:
            nq = queries.shape[0]
            return np.full((nq, k), self.missing_distance, np.int32), np.full((nq, k), -1, np.int64)
        s = self.structure()
        if s == "scan":
            self.last_stats = None
            return flat_knn(self.words(), qw, k)
        d, p, self.last_stats = self._struct.knn(qw, k)
        return d, p

    def _range_search(self, queries: np.ndarray, radius: float) -> list[tuple[np.ndarray, np.ndarray]]:
        r = int(np.floor(radius))
        qw = as_words(queries)
        if len(self) == 0 or r < 0:
            return [(np.zeros(0, np.int32), np.zeros(0, np.int64)) for _ in range(queries.shape[0])]
        s = self.structure()
        out = []
        stats = []
        for i in range(qw.shape[0]):
            if s == "scan":
                out.append(flat_radius(self.words(), qw[i], r))
            else:
                d, p, st = self._struct.radius(qw[i], r)
                out.append((d, p))
                stats.append(st)
        self.last_stats = np.array(stats) if stats else None
        return out

    def _get_positions(self, positions: np.ndarray) -> np.ndarray:
        return np.array(self._codes[positions], dtype=np.uint8)

    def _stored_count(self) -> int:
        return int(self._codes.shape[0])

    def codes(self) -> np.ndarray:
        """All stored codes (n, dim/8) in position order."""
        return self._codes

    @property
    def memory_bytes(self) -> int:
        """Codes plus the structure's arrays (ids not counted)."""
        extra = 0 if self._struct is None else int(self._struct.nbytes)
        return int(self._codes.nbytes) + extra

    # -- persistence --
    def _state(self) -> tuple[dict[str, Any], dict[str, bytes | np.ndarray]]:
        chosen = self.structure() if len(self) else self.chosen
        params = {"kind": self.kind, "chosen": chosen, "mih_m": self.mih_m, "nlist": self.nlist,
                  "permute": self.permute, "seed": self.seed, "auto": self.auto_info}
        if chosen == "mih" and self._struct is not None:
            params["mih_m"] = int(self._struct.m)
        return params, {"codes.npy": np.ascontiguousarray(self._codes)}

    @classmethod
    def _from_state(cls, params: dict[str, Any], path: Path, manifest: dict[str, Any]) -> Index:
        index = cls(int(manifest["dim"]), kind=str(params.get("kind", "auto")), mih_m=params.get("mih_m"),
                    nlist=params.get("nlist"), permute=bool(params.get("permute", True)),
                    seed=int(params.get("seed", 0)))
        codes = load_npy(path / "codes.npy")
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != index.nbytes:
            raise IndexFileError(f"{path}: codes.npy has {codes.dtype} {codes.shape}, expected (n, {index.nbytes})")
        index._codes = codes
        chosen = params.get("chosen")
        if chosen is not None and chosen not in STRUCTURES:
            raise IndexFileError(f"{path}: unknown structure {chosen!r} in the manifest")
        index.chosen = chosen
        index.auto_info = dict(params.get("auto") or {})
        return index
