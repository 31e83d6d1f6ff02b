"""The Index protocol every rsir index implements, the id map, and the versioned on-disk format.

An index stores vectors (packed uint8 hash codes for ``metric="hamming"``, float32 for ``"ip"`` / ``"l2"``)
under arbitrary external ids (all int64 or all strings). Internally each stored vector has a *position*
(0..n-1, insertion order, compacted on removal); ranking ties are broken by ascending position, i.e. by
insertion order, which for an archive indexed in catalog order is the archive position.

On disk an index is a directory: ``manifest.json`` (format name, version, kind, metric, dim, count, params,
sha256 and size of every data file) plus the data files. It is written into a hidden temporary sibling
directory and renamed into place, so a half-written index never looks complete.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from rsir.errors import NotFoundError, RsirError
from rsir.registry import Registry
from rsir.storage import StorageError, read_manifest, write_dir_atomic

FORMAT_NAME = "rsir-index"
# version 2 names the implementing class "backend" (version 1 called it "kind"; both are read)
FORMAT_VERSION = 2

IdArray = np.ndarray  # int64 array, or object array of str


class IndexError_(RsirError):
    """Base class of index errors a user can cause (bad arguments, duplicate ids)."""


class IndexFileError(StorageError):
    """An index directory is missing, damaged (checksum / size mismatch, truncated) or not an rsir index."""


def as_ids(ids: Any) -> IdArray:
    """Normalise external ids to an int64 array or an object array of str (no mixing)."""
    if isinstance(ids, (str, bytes, int, np.integer)):
        ids = [ids]
    arr = np.asarray(ids)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind in "US":
        return np.array([str(x) for x in arr.tolist()], dtype=object)
    if arr.dtype.kind == "O":
        if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in arr):
            return arr.astype(np.int64)
        if all(isinstance(x, str) for x in arr):
            return arr
    raise IndexError_(f"ids must be all integers or all strings, got dtype {arr.dtype}")


class IdMap:
    """External ids in position order, with a lazily built hash lookup (pandas Index) for get/remove."""

    def __init__(self, ids: IdArray | None = None) -> None:
        self.ids: IdArray = np.zeros(0, dtype=np.int64) if ids is None else ids
        self._lookup: pd.Index | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def is_str(self) -> bool:
        """True when the ids are strings."""
        return self.ids.dtype == object

    def _index(self) -> pd.Index:
        if self._lookup is None:
            self._lookup = pd.Index(self.ids)
        return self._lookup

    def check_new(self, ids: IdArray) -> None:
        """Reject ids of the other type, duplicates within ``ids`` and ids already present."""
        if len(self) and ids.size and (ids.dtype == object) != self.is_str:
            raise IndexError_("ids must all be of one type (int or str) within an index")
        if ids.size and not pd.Index(ids).is_unique:
            raise IndexError_("duplicate ids in one add() call")
        if len(self) and ids.size:
            found = self._index().get_indexer(ids) >= 0
            if found.any():
                raise IndexError_(f"id {ids[np.argmax(found)]!r} is already in the index")

    def extend(self, ids: IdArray) -> None:
        """Append new ids (already checked)."""
        if not ids.size:
            return
        self.ids = ids.copy() if not len(self) else np.concatenate([self.ids, ids])
        self._lookup = None

    def positions(self, ids: IdArray) -> np.ndarray:
        """Positions of ``ids`` (int64, -1 where absent)."""
        if not len(self) or not ids.size:
            return np.full(ids.shape[0], -1, dtype=np.int64)
        if (ids.dtype == object) != self.is_str:
            return np.full(ids.shape[0], -1, dtype=np.int64)
        return self._index().get_indexer(ids).astype(np.int64)

    def delete(self, positions: np.ndarray) -> None:
        """Drop the given positions, keeping the order of the rest."""
        keep = np.ones(len(self), dtype=bool)
        keep[positions] = False
        self.ids = self.ids[keep]
        self._lookup = None

    def lookup(self, positions: np.ndarray) -> IdArray:
        """External ids for a (nq, k) array of positions; -1 -> -1 (int ids) or None (str ids)."""
        if len(self) and positions.size and positions.min() >= 0:
            return self.ids[positions]  # the common case: every slot found
        missing = positions < 0
        out = self.ids[np.where(missing, 0, positions)] if len(self) else np.zeros(positions.shape, self.ids.dtype)
        if missing.any():
            out = out.copy()
            out[missing] = None if self.is_str else -1
        return out


def sort_ties(distances: np.ndarray, positions: np.ndarray, descending: bool = False) -> tuple[np.ndarray,
                                                                                             np.ndarray]:
    """Reorder each row by (distance, position) so ties follow insertion order; missing slots (-1) go last."""
    if distances.size == 0:
        return distances, positions
    d = -distances if descending else distances
    big = np.iinfo(np.int64).max
    pos_key = np.where(positions < 0, big, positions)
    order = np.lexsort((pos_key, d), axis=-1)
    return np.take_along_axis(distances, order, -1), np.take_along_axis(positions, order, -1)


def check_codes(vectors: np.ndarray, bits: int) -> np.ndarray:
    """Packed uint8 codes of ``bits`` bits as a C-contiguous (n, bits / 8) array (one code may come as a 1-D row);
    IndexError_ for any other shape or dtype. Shared by every index of binary codes."""
    v = np.asarray(vectors)
    if v.ndim == 1:
        v = v[None, :]
    nbytes = bits // 8
    if v.dtype != np.uint8 or v.ndim != 2 or v.shape[1] != nbytes:
        raise IndexError_(f"expected packed uint8 codes of shape (n, {nbytes}) for {bits} bits, got {v.dtype} {v.shape}")
    return np.ascontiguousarray(v)


def npy_bytes(a: np.ndarray) -> bytes:
    """An array as .npy bytes (no pickles), for an index's data files."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def load_npy(path: Path) -> np.ndarray:
    """np.load without pickles, turning a malformed file into IndexFileError."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise IndexFileError(f"{path}: damaged array file ({e})") from None


class Index(ABC):
    """Vectors under external ids, searchable by k-NN and by radius. numpy in, numpy out (faiss style).

    ``search`` returns ``(distances, ids)`` of shape (nq, k), best first. For ``hamming`` distances are int32
    bit counts, for ``l2`` squared Euclidean float32 (smaller is better), for ``ip`` inner products float32
    (larger is better, ``higher_is_better``). Empty slots (fewer than k stored) have id -1 (int ids) or None
    (str ids) and distance ``missing_distance``.
    """

    backend: ClassVar[str]  # the BACKENDS name of the implementing class
    metric: str
    dim: int

    def __init__(self, metric: str, dim: int) -> None:
        self.metric = metric
        self.dim = int(dim)
        self._idmap = IdMap()

    # -- what concrete indexes implement (positions are 0..n-1 in insertion order) --
    @abstractmethod
    def _check_vectors(self, vectors: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _add(self, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def _remove_positions(self, positions: np.ndarray) -> None: ...

    @abstractmethod
    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    @abstractmethod
    def _range_search(self, queries: np.ndarray, radius: float) -> list[tuple[np.ndarray, np.ndarray]]: ...

    @abstractmethod
    def _get_positions(self, positions: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _state(self) -> tuple[dict[str, Any], dict[str, bytes | np.ndarray]]: ...

    @classmethod
    @abstractmethod
    def _from_state(cls, params: dict[str, Any], path: Path, manifest: dict[str, Any]) -> Index: ...

    # -- the public protocol --
    @property
    def higher_is_better(self) -> bool:
        """True for inner-product similarity, False for distances."""
        return self.metric == "ip"

    @property
    def missing_distance(self) -> float | int:
        """Distance reported in empty result slots."""
        if self.metric == "hamming":
            return int(np.iinfo(np.int32).max)
        return -np.inf if self.higher_is_better else np.inf

    @property
    def ids(self) -> IdArray:
        """All stored ids in position (insertion) order."""
        return self._idmap.ids

    def __len__(self) -> int:
        return len(self._idmap)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(metric={self.metric!r}, dim={self.dim}, n={len(self)})"

    def add(self, ids: Any, vectors: np.ndarray) -> None:
        """Add vectors under new ids (all int or all str, not already present)."""
        id_arr = as_ids(ids)
        vecs = self._check_vectors(vectors)
        if vecs.shape[0] != id_arr.shape[0]:
            raise IndexError_(f"{id_arr.shape[0]} ids but {vecs.shape[0]} vectors")
        self._idmap.check_new(id_arr)
        self._add(vecs)
        self._idmap.extend(id_arr)

    def remove(self, ids: Any) -> int:
        """Remove the given ids (absent ones are ignored); returns how many were removed."""
        pos = self._idmap.positions(as_ids(ids))
        pos = np.unique(pos[pos >= 0])
        if pos.size:
            self._remove_positions(pos)
            self._idmap.delete(pos)
        return int(pos.size)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, IdArray]:
        """k nearest stored vectors of each query: (distances (nq, k), ids (nq, k))."""
        if k < 1:
            raise IndexError_(f"k must be >= 1, got {k}")
        q = self._check_vectors(queries)
        d, pos = self._search(q, int(k))
        return d, self._idmap.lookup(pos)

    def range_search(self, queries: np.ndarray, radius: float) -> list[tuple[np.ndarray, IdArray]]:
        """All stored vectors within ``radius`` of each query, best first (hamming: distance <= radius;
        float: faiss semantics, squared l2 < radius or ip > radius)."""
        q = self._check_vectors(queries)
        return [(d, self._idmap.lookup(p)) for d, p in self._range_search(q, radius)]

    def range_search_positions(self, queries: np.ndarray, radius: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """As ``range_search``, with positions (0..n-1 in insertion order, as in ``ids``) instead of ids: a caller
        that maps many hits to rows of its own does it with one array lookup instead of one per id."""
        return self._range_search(self._check_vectors(queries), radius)

    def get(self, ids: Any) -> np.ndarray:
        """Stored vectors (packed uint8 codes for hamming) for the given ids; NotFoundError if one is absent."""
        id_arr = as_ids(ids)
        pos = self._idmap.positions(id_arr)
        if (pos < 0).any():
            raise NotFoundError(f"id {id_arr[np.argmax(pos < 0)]!r} is not in the index")
        return self._get_positions(pos)

    def save(self, path: str | Path) -> Path:
        """Write the index directory atomically (temp dir + rename) with a checksummed manifest."""
        params, files = self._state()
        ids = self._idmap.ids
        blobs = {name: npy_bytes(v) if isinstance(v, np.ndarray) else v for name, v in files.items()}
        blobs["ids.npy"] = npy_bytes(ids.astype(str) if self._idmap.is_str else ids)
        manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "backend": self.backend, "metric": self.metric,
                    "dim": self.dim, "count": len(self), "id_type": "str" if self._idmap.is_str else "int",
                    "params": params}
        return write_dir_atomic(Path(path), blobs, manifest)

    @classmethod
    def load(cls, path: str | Path) -> Index:
        """Load an index directory (verifying checksums); on the base class dispatches on the manifest kind."""
        path = Path(path)
        manifest = read_manifest(path, FORMAT_NAME, FORMAT_VERSION, IndexFileError, what="index")
        backend = str(manifest.get("backend", manifest.get("kind")))
        target = BACKENDS.get(backend)
        if not issubclass(target, cls):
            raise IndexFileError(f"{path}: a {backend!r} index, not a {cls.__name__}")
        raw = load_npy(path / "ids.npy")
        ids = np.array(raw.tolist(), dtype=object) if manifest.get("id_type") == "str" else raw.astype(np.int64)
        if ids.shape[0] != int(manifest["count"]):
            raise IndexFileError(f"{path}: {ids.shape[0]} ids but manifest count is {manifest['count']}")
        index = target._from_state(manifest.get("params", {}), path, manifest)
        index._idmap = IdMap(ids)
        if index._stored_count() != ids.shape[0]:
            raise IndexFileError(f"{path}: data holds {index._stored_count()} vectors but {ids.shape[0]} ids")
        return index

    def _stored_count(self) -> int:
        """Vectors held by the concrete storage (for load-time consistency checks)."""
        return len(self)


def open_index(path: str | Path) -> Index:
    """Open any rsir index directory, dispatching on its manifest's kind."""
    return Index.load(path)



#: backend name -> "module:Class" of an Index implementation, imported when an index of it is opened.
BACKENDS: Registry[type[Index]] = Registry("index backend", {
    "hamming": "rsir.index.faiss_binary:HammingIndex",
    "hamming-exact": "rsir.index.exact:ExactHammingIndex",
    "float": "rsir.index.faiss_float:FloatIndex",
    "milvus": "rsir.index.milvus:MilvusIndex",
}, IndexFileError)
