"""MilvusIndex: packed binary codes in a Milvus collection (BINARY_VECTOR, HAMMING), behind the Index protocol.

Where the vectors live: ``uri`` is a Milvus Lite file (``something.db``: embedded, one process, the default for
one machine) or a Milvus standalone / cluster server (``http://host:19530``). Milvus Lite 2.5 is the series that
stores binary vectors (3.x refuses BINARY_VECTOR fields) and only builds BIN_FLAT there; BIN_IVF_FLAT (``kind="ivf"``,
``nlist`` cells, ``nprobe`` visited) needs a server. The INDEX directory keeps only the pointer (uri, collection)
and the id map; the codes are in Milvus.

Rows: primary key = a serial number that grows with insertion order (position order), the code, and scalar fields
for the engine's filters (label indices, split, country, date, lon/lat, bbox), so a filtered query is answered by
Milvus with the filter applied inside the search (:meth:`MilvusIndex.filtered_search`). Milvus Lite 2.5 does
not take bound expression parameters, so text fields are stored as the hex of their UTF-8 bytes and a filter
value enters an expression only as a hex literal or a number: no request text is ever spliced into one.

Exact results, ties included: Milvus returns tied codes in no defined order and cuts a tie at the k-th distance
anywhere. rsir asks for the top k, then fetches every code at exactly the k-th distance with a range search over
that one distance (``range_filter <= d < radius``) and keeps the lowest positions, which is the faiss backend's
rule (distance, then position). Milvus returns at most 16,384 hits per search (``MILVUS_CAP``): beyond that
(k > 16,384, or more tied codes than that at one distance) rsir pages by distance bands, and a band that is still
too large is split into primary-key windows, each answered completely, until k results are collected. The cost
grows with the number of such pages; results stay exact.
"""

from __future__ import annotations

import importlib.metadata
import sys
import types
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rsir.index.base import Index, IndexError_, IndexFileError, check_codes, load_npy

#: the most hits one Milvus search returns (its topk / limit bound)
MILVUS_CAP = 16384
#: scalar fields every row carries (the filters of the query engine)
MAX_LABELS = 256


def _pymilvus() -> Any:
    """Import pymilvus (and, for file URIs, Milvus Lite). milvus-lite 2.5 imports ``pkg_resources``, which
    setuptools >= 81 no longer ships: a two-function stand-in answering its version query is provided then."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        shim = types.ModuleType("pkg_resources")

        class DistributionNotFound(Exception):
            pass

        def get_distribution(name: str) -> Any:
            try:
                return types.SimpleNamespace(version=importlib.metadata.version(name))
            except importlib.metadata.PackageNotFoundError:
                raise DistributionNotFound(name) from None

        shim.DistributionNotFound = DistributionNotFound  # type: ignore[attr-defined]
        shim.get_distribution = get_distribution  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    try:
        import pymilvus
    except ImportError:
        raise IndexError_("the milvus backend needs pymilvus and milvus-lite (pip install 'pymilvus<2.6' "
                          "'milvus-lite<2.6')") from None
    return pymilvus


def is_lite(uri: str) -> bool:
    """True for a Milvus Lite file URI (a local path ending in .db)."""
    return "://" not in uri and uri.endswith(".db")


class MilvusIndex(Index):
    """Exact (BIN_FLAT) or IVF (BIN_IVF_FLAT, server only) Hamming search over codes stored in Milvus."""

    backend: ClassVar[str] = "milvus"

    def __init__(self, dim: int, kind: str = "flat", uri: str | None = None, collection: str | None = None,
                 nlist: int | None = None, nprobe: int = 16, seed: int = 0, create: bool = True) -> None:
        if dim <= 0 or dim % 8:
            raise IndexError_(f"Milvus binary vectors need a positive number of bits divisible by 8, got {dim}")
        if kind not in ("flat", "ivf"):
            raise IndexError_(f"the milvus backend builds kind flat (BIN_FLAT) or ivf (BIN_IVF_FLAT), not {kind!r}")
        if uri is None:
            raise IndexError_("the milvus backend needs a uri: a Milvus Lite file (.db) or http://host:19530")
        uri = str(Path(uri).resolve()) if is_lite(uri) else uri
        if kind == "ivf" and is_lite(uri):
            raise IndexError_("Milvus Lite builds only BIN_FLAT for binary vectors ('local mode only support "
                              "BIN_FLAT'): use --kind flat, or a Milvus server --uri for ivf")
        super().__init__("hamming", dim)
        self.kind, self.uri, self.nprobe, self.seed = kind, uri, int(nprobe), int(seed)
        self.nbytes = dim // 8
        self.nlist = nlist
        self.collection = collection or f"rsir_{uuid.uuid4().hex[:16]}"
        self._serials = np.zeros(0, dtype=np.int64)
        self._next_serial = 0
        self._next_attrs: dict[str, Sequence[Any]] | None = None
        self._client: Any = None
        self._write_through = True
        if create:
            self._create()

    # -- the connection and the collection --
    @property
    def client(self) -> Any:
        """The MilvusClient (connected on first use)."""
        if self._client is None:
            pm = _pymilvus()
            try:
                self._client = pm.MilvusClient(self.uri, timeout=120)  # bounds pymilvus's retries too
            except Exception as e:  # pymilvus raises its own MilvusException and plain connection errors
                raise IndexError_(f"cannot connect to Milvus at {self.uri} ({type(e).__name__}: {e})") from None
        return self._client

    def _create(self) -> None:
        pm = _pymilvus()
        dt = pm.DataType
        c = self.client
        if c.has_collection(self.collection):
            raise IndexError_(f"Milvus collection {self.collection!r} exists already at {self.uri}")
        s = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        s.add_field("pk", dt.INT64, is_primary=True)
        s.add_field("code", dt.BINARY_VECTOR, dim=self.dim)
        s.add_field("labels", dt.ARRAY, element_type=dt.INT16, max_capacity=MAX_LABELS)
        for name in ("split", "country", "date"):
            s.add_field(name, dt.VARCHAR, max_length=512)
        for name in ("lon", "lat", "min_lon", "min_lat", "max_lon", "max_lat"):
            s.add_field(name, dt.DOUBLE)
        s.add_field("has_loc", dt.BOOL)
        s.add_field("has_bbox", dt.BOOL)
        ip = c.prepare_index_params()
        if self.kind == "ivf":
            ip.add_index("code", index_type="BIN_IVF_FLAT", metric_type="HAMMING",
                         params={"nlist": int(self.nlist or 1024)})
        else:
            ip.add_index("code", index_type="BIN_FLAT", metric_type="HAMMING")
        c.create_collection(self.collection, schema=s, index_params=ip)
        c.load_collection(self.collection)

    def close(self) -> None:
        """Close the connection (the data stays in Milvus)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def drop(self) -> None:
        """Delete the collection and its data from Milvus."""
        if self.client.has_collection(self.collection):
            self.client.drop_collection(self.collection)

    # -- rows --
    def add_with_attributes(self, ids: Any, vectors: np.ndarray, attrs: dict[str, Sequence[Any]]) -> None:
        """``add`` with the scalar fields of each row (keys of :func:`row_attributes`)."""
        self._next_attrs = attrs
        try:
            self.add(ids, vectors)
        finally:
            self._next_attrs = None

    def _check_vectors(self, vectors: np.ndarray) -> np.ndarray:
        return check_codes(vectors, self.dim)

    def _add(self, vectors: np.ndarray) -> None:
        n = vectors.shape[0]
        serials = np.arange(self._next_serial, self._next_serial + n, dtype=np.int64)
        attrs = self._next_attrs or {}
        cols = {k: list(attrs.get(k, [default] * n)) for k, default in _DEFAULTS.items()}
        for s in range(0, n if self._write_through else 0, 8192):
            rows = [{"pk": int(serials[i]), "code": vectors[i].tobytes(),
                     **{k: _clean(k, cols[k][i]) for k in _DEFAULTS}} for i in range(s, min(n, s + 8192))]
            self.client.insert(self.collection, rows)
        self._serials = np.concatenate([self._serials, serials])
        self._next_serial += n

    def _remove_positions(self, positions: np.ndarray) -> None:
        pks = self._serials[positions]
        for s in range(0, pks.size if self._write_through else 0, 8192):
            self.client.delete(self.collection, ids=[int(x) for x in pks[s:s + 8192]])
        keep = np.ones(len(self), dtype=bool)
        keep[positions] = False
        self._serials = self._serials[keep]

    def _get_positions(self, positions: np.ndarray) -> np.ndarray:
        out = np.zeros((positions.size, self.nbytes), dtype=np.uint8)
        pks = self._serials[positions]
        for s in range(0, pks.size, 8192):
            chunk = [int(x) for x in pks[s:s + 8192]]
            rows = self.client.query(self.collection, filter=f"pk in {chunk}", output_fields=["pk", "code"])
            got = {int(r["pk"]): _code_bytes(r["code"]) for r in rows}
            for j, pk in enumerate(chunk):
                out[s + j] = np.frombuffer(got[pk], dtype=np.uint8)
        return out

    def _positions(self, pks: np.ndarray) -> np.ndarray:
        """Positions of primary keys; -1 for a row this index does not know (written by another process after
        this one opened, or left by an earlier run)."""
        pos = np.searchsorted(self._serials, pks).astype(np.int64)
        ok = pos < self._serials.size
        ok[ok] = self._serials[pos[ok]] == pks[ok]
        return np.where(ok, pos, -1)

    def reconcile(self) -> None:
        """Delete the rows past the saved ones (added by earlier runs: the journal replay adds them again)."""
        self.client.delete(self.collection, filter=f"pk >= {int(self._next_serial)}")

    @contextmanager
    def bookkeeping_only(self) -> Iterator[None]:
        """Within the block, add and remove update the id map and serials but not Milvus (a reader replaying a
        journal whose writer has applied it)."""
        self._write_through = False
        try:
            yield
        finally:
            self._write_through = True

    # -- search --
    def _params(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        p: dict[str, Any] = {"metric_type": "HAMMING", "params": {}}
        if self.kind == "ivf":
            p["params"]["nprobe"] = self.nprobe
        if extra:
            p["params"].update(extra)
        return p

    def _raw(self, q: np.ndarray, limit: int, where: str = "", band: tuple[int, int] | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """One Milvus search: (pks, distances) of at most ``limit`` (<= MILVUS_CAP) hits, in Milvus's order."""
        extra = None if band is None else {"range_filter": band[0], "radius": band[1]}
        kwargs: dict[str, Any] = {"filter": where} if where else {}
        res = self.client.search(self.collection, data=[q.tobytes()], limit=int(limit), anns_field="code",
                                 search_params=self._params(extra), output_fields=["pk"], **kwargs)[0]
        pks = np.array([int(h["id"]) for h in res], dtype=np.int64)
        d = np.array([int(round(h["distance"])) for h in res], dtype=np.int64)
        known = self._positions(pks) >= 0
        return pks[known], d[known]

    def _band(self, q: np.ndarray, d: int, need: int, where: str) -> np.ndarray:
        """Positions of the first ``need`` codes (by position) at distance exactly ``d``."""
        pks, _ = self._raw(q, MILVUS_CAP, where, band=(d, d + 1))
        if pks.size < MILVUS_CAP:
            return np.sort(self._positions(pks))[:need]
        # more tied codes than one search returns: complete primary-key windows, lowest first
        out: list[np.ndarray] = []
        got = 0
        stack = [(0, self._next_serial)]
        while stack and got < need:
            lo, hi = stack.pop()
            w = f"pk >= {lo} and pk < {hi}"
            pks, _ = self._raw(q, MILVUS_CAP, f"({where}) and {w}" if where else w, band=(d, d + 1))
            if pks.size >= MILVUS_CAP and hi - lo > 1:
                mid = (lo + hi) // 2
                stack += [(mid, hi), (lo, mid)]  # the lower window is searched first
                continue
            pos = np.sort(self._positions(pks))
            out.append(pos)
            got += pos.size
        return np.concatenate(out)[:need] if out else np.zeros(0, np.int64)

    def _knn_one(self, q: np.ndarray, k: int, where: str = "") -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest positions by (distance, position), and their distances."""
        pks, d = self._raw(q, min(k, MILVUS_CAP), where)
        pos = self._positions(pks)
        if pks.size < min(k, MILVUS_CAP):  # everything that passes is here
            order = np.lexsort((pos, d))
            return d[order], pos[order]
        top = int(d.max())
        sure = d < top  # every code closer than the last distance is in the answer
        order = np.lexsort((pos[sure], d[sure]))
        dist, out = [d[sure][order]], [pos[sure][order]]
        have = int(sure.sum())
        for band in range(top, self.dim + 1):
            if have >= k:
                break
            got = self._band(q, band, k - have, where)
            dist.append(np.full(got.size, band, np.int64))
            out.append(got)
            have += got.size
        return np.concatenate(dist)[:k], np.concatenate(out)[:k]

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._fill([self._knn_one(q, k) for q in queries], k)

    def _fill(self, rows: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
        dist = np.full((len(rows), k), self.missing_distance, np.int32)
        pos = np.full((len(rows), k), -1, np.int64)
        for i, (d, p) in enumerate(rows):
            dist[i, :d.size], pos[i, :p.size] = d, p
        return dist, pos

    def filtered_search(self, queries: np.ndarray, k: int, where: str) -> tuple[np.ndarray, Any]:
        """k nearest codes among the rows passing the Milvus expression ``where`` (built by
        ``rsir.query.items.pushdown_filter``: numbers and hex literals only), exact with ties by position;
        (distances, ids) as :meth:`search`."""
        q = self._check_vectors(queries)
        if len(self) == 0:
            d, p = self._fill([(np.zeros(0, np.int64), np.zeros(0, np.int64)) for _ in q], k)
        else:
            d, p = self._fill([self._knn_one(x, k, where) for x in q], k)
        return d, self._idmap.lookup(p)

    def _range_search(self, queries: np.ndarray, radius: float) -> list[tuple[np.ndarray, np.ndarray]]:
        r = int(np.floor(radius))
        out = []
        for q in queries:
            if len(self) == 0 or r < 0:
                out.append((np.zeros(0, np.int32), np.zeros(0, np.int64)))
                continue
            pks, d = self._raw(q, MILVUS_CAP, band=(0, r + 1))
            if pks.size < MILVUS_CAP:
                pos = self._positions(pks)
            else:  # page band by band
                parts = [self._band(q, b, len(self), "") for b in range(r + 1)]
                d = np.concatenate([np.full(p.size, b, np.int64) for b, p in enumerate(parts)])
                pos = np.concatenate(parts)
            order = np.lexsort((pos, d))
            out.append((d[order].astype(np.int32), pos[order]))
        return out

    # -- persistence --
    def _state(self) -> tuple[dict[str, Any], dict[str, bytes | np.ndarray]]:
        self.client.flush(self.collection)
        params = {"kind": self.kind, "uri": self.uri, "collection": self.collection, "nlist": self.nlist,
                  "nprobe": self.nprobe, "seed": self.seed, "next_serial": self._next_serial}
        return params, {"serials.npy": self._serials}

    @classmethod
    def _from_state(cls, params: dict[str, Any], path: Path, manifest: dict[str, Any]) -> Index:
        index = cls(int(manifest["dim"]), kind=str(params.get("kind", "flat")), uri=str(params["uri"]),
                    collection=str(params["collection"]), nlist=params.get("nlist"),
                    nprobe=int(params.get("nprobe", 16)), seed=int(params.get("seed", 0)), create=False)
        if not index.client.has_collection(index.collection):
            raise IndexFileError(f"{path}: Milvus collection {index.collection!r} is not at {index.uri}")
        index.client.load_collection(index.collection)
        index._serials = load_npy(path / "serials.npy").astype(np.int64)
        index._next_serial = int(params.get("next_serial", index._serials.size))
        return index

    def _stored_count(self) -> int:
        return int(self._serials.size)


_DEFAULTS: dict[str, Any] = {"labels": [], "split": "", "country": "", "date": "", "lon": 0.0, "lat": 0.0,
                             "min_lon": 0.0, "min_lat": 0.0, "max_lon": 0.0, "max_lat": 0.0, "has_loc": False,
                             "has_bbox": False}


def _clean(key: str, v: Any) -> Any:
    if key == "labels":
        return [int(x) for x in v][:MAX_LABELS]
    if key in ("split", "country", "date"):
        return str(v)[:512]
    if key in ("has_loc", "has_bbox"):
        return bool(v)
    f = float(v)
    return f if np.isfinite(f) else 0.0


def _code_bytes(v: Any) -> bytes:
    return bytes(v[0]) if isinstance(v, list) else bytes(v)
