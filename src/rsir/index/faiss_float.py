"""FloatIndex: exact float32 search with faiss IndexFlatIP (inner product) or IndexFlatL2 (squared L2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np

from rsir.index.base import Index, IndexError_, IndexFileError, load_npy, sort_ties


class FloatIndex(Index):
    """The float baseline: ``metric="ip"`` (larger is better) or ``"l2"`` (squared distance, smaller is better)."""

    backend: ClassVar[str] = "float"

    def __init__(self, dim: int, metric: str = "ip") -> None:
        if metric not in ("ip", "l2"):
            raise IndexError_(f"float index metric must be 'ip' or 'l2', got {metric!r}")
        if dim <= 0:
            raise IndexError_(f"dimension must be positive, got {dim}")
        super().__init__(metric, dim)
        self._faiss: Any = faiss.IndexFlatIP(dim) if metric == "ip" else faiss.IndexFlatL2(dim)

    @property
    def faiss_index(self) -> Any:
        """The underlying faiss index."""
        return self._faiss

    def vectors(self) -> np.ndarray:
        """All stored vectors (n, dim) in position order, as a read-only view."""
        n = self._faiss.ntotal
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        view = faiss.rev_swig_ptr(self._faiss.get_xb(), n * self.dim).reshape(n, self.dim)
        view.flags.writeable = False
        return view

    def _check_vectors(self, vectors: np.ndarray) -> np.ndarray:
        v = np.asarray(vectors)
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim != 2 or v.shape[1] != self.dim or v.dtype.kind not in "fiu":
            raise IndexError_(f"expected float vectors of shape (n, {self.dim}), got {v.dtype} {v.shape}")
        return np.ascontiguousarray(v, dtype=np.float32)

    def _add(self, vectors: np.ndarray) -> None:
        self._faiss.add(vectors)

    def _remove_positions(self, positions: np.ndarray) -> None:
        keep = np.ones(len(self), dtype=bool)
        keep[positions] = False
        rest = np.ascontiguousarray(self.vectors()[keep])
        self._faiss.reset()
        self._faiss.add(rest)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        nq = queries.shape[0]
        if len(self) == 0:
            return np.full((nq, k), self.missing_distance, np.float32), np.full((nq, k), -1, np.int64)
        dist, labels = self._faiss.search(queries, k)
        dist = np.where(labels < 0, self.missing_distance, dist).astype(np.float32)
        return sort_ties(dist, labels, descending=self.higher_is_better)

    def _range_search(self, queries: np.ndarray, radius: float) -> list[tuple[np.ndarray, np.ndarray]]:
        # faiss semantics: l2 keeps squared distances < radius, ip keeps inner products > radius
        if len(self) == 0:
            return [(np.zeros(0, np.float32), np.zeros(0, np.int64)) for _ in range(queries.shape[0])]
        lims, dist, labels = self._faiss.range_search(queries, float(radius))
        out = []
        for i in range(queries.shape[0]):
            d = dist[lims[i]:lims[i + 1]].astype(np.float32)
            p = labels[lims[i]:lims[i + 1]].astype(np.int64)
            order = np.lexsort((p, -d if self.higher_is_better else d))
            out.append((d[order], p[order]))
        return out

    def _get_positions(self, positions: np.ndarray) -> np.ndarray:
        return np.array(self.vectors()[positions], dtype=np.float32)

    def _stored_count(self) -> int:
        return int(self._faiss.ntotal)

    def _state(self) -> tuple[dict[str, Any], dict[str, bytes | np.ndarray]]:
        return {}, {"vectors.npy": np.ascontiguousarray(self.vectors())}

    @classmethod
    def _from_state(cls, params: dict[str, Any], path: Path, manifest: dict[str, Any]) -> Index:
        index = cls(int(manifest["dim"]), metric=str(manifest["metric"]))
        vec = load_npy(path / "vectors.npy")
        if vec.dtype != np.float32 or vec.ndim != 2 or vec.shape[1] != index.dim:
            raise IndexFileError(f"{path}: vectors.npy has {vec.dtype} {vec.shape}, expected (n, {index.dim})")
        index._faiss.add(np.ascontiguousarray(vec))
        return index
