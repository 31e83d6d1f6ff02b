"""The query engine: the one place where a query becomes a ranked, filtered, paged list of results.

Every front end calls it: ``rsir search`` (CLI), the web service (``rsir.service.app`` is a thin HTTP layer over
it), ``rsir eval`` (which reads the stored vectors through it) and the Python API (``rsir.load_index``).

Ranking rule: the index's distance, ties broken by index position, which for an archive indexed in catalog order
is the archive position (the same rule as the evaluation). Filters remove items from that ranking; the index is
asked for more neighbours until enough pass, so a filtered ranking is exactly the unfiltered ranking with the
failing items removed.

Concurrency: searches take the read side of a readers-writer lock; adding an item encodes it outside the lock
and takes the write side only to append the code to the index and the item to the table, so a search never sees
an index and a table of different lengths and concurrent searches do not wait for each other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rsir.data.archive import Archive
from rsir.data.bands import ModalitySpec, normalize, to_grid
from rsir.data.uploads import ParsedUpload, UploadError, parse_upload
from rsir.encoding import Encoder
from rsir.errors import NotFoundError, RsirError
from rsir.index import Index
from rsir.pipeline import IndexDir
from rsir.query.items import ConflictError, Filters, ItemTable, QueryError
from rsir.query.text import TextMatch, TextMatcher

if TYPE_CHECKING:
    import pandas as pd

#: an upload read from a local file by the CLI or the API may be this large
LOCAL_FILE_LIMIT = 2 << 30


@dataclass(frozen=True)
class QueryLimits:
    """Bounds on what one query may ask for (the service passes its own, tighter ones)."""

    max_k: int = 100_000
    max_offset: int = 1_000_000


class RWLock:
    """Many readers or one writer; writers are not starved (new readers wait while a writer waits)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass
class Hit:
    """One result: the item's metadata with its rank and distance."""

    rank: int
    position: int  # row in the engine's item table (archive position for archive items)
    id: str
    distance: int | float | None
    labels: list[str]
    shares_label: bool | None  # None when the query has no labels
    item: dict[str, Any]  # the item's record (split, country, date, lon, lat, bbox, modalities, added)

    def to_json(self) -> dict[str, Any]:
        """The record with rank, distance and shares_label, as the service and ``rsir search --json`` print it."""
        return {**self.item, "rank": self.rank, "distance": self.distance, "shares_label": self.shares_label}


@dataclass
class Results:
    """A page of ranked results and what produced it."""

    mode: str  # id | vector | image | upload | file | label-match
    hits: list[Hit]
    k: int
    offset: int
    metric: str
    matching: int  # items passing the filters (all items without filters)
    query_ms: float
    query: dict[str, Any] = field(default_factory=dict)

    @property
    def precision(self) -> float | None:
        """Share of hits with a label in common with the query (None when the query has no labels)."""
        known = [h.shares_label for h in self.hits if h.shares_label is not None]
        return sum(known) / len(known) if known else None

    @property
    def ids(self) -> list[str]:
        return [h.id for h in self.hits]

    def to_json(self) -> dict[str, Any]:
        """The JSON shape every front end answers with."""
        return {"mode": self.mode, "query": self.query, "results": [h.to_json() for h in self.hits],
                "precision": self.precision, "k": self.k, "offset": self.offset, "metric": self.metric,
                "query_ms": self.query_ms, "matching": self.matching}

    def to_dataframe(self) -> pd.DataFrame:
        """One row per hit: rank, id, distance, labels, shares_label and the item's metadata."""
        import pandas as pd

        cols = ["rank", "id", "distance", "labels", "shares_label", "split", "country", "date", "lon", "lat"]
        rows = [h.to_json() for h in self.hits]
        return pd.DataFrame(rows, columns=cols + sorted({c for r in rows for c in r} - set(cols)))


class SearchEngine:
    """An INDEX directory over its archive: search by id, vector, image, uploaded bytes, file or text."""

    def __init__(self, index_dir: IndexDir, archive: Archive, limits: QueryLimits | None = None) -> None:
        self.index_dir = index_dir
        self.index: Index = index_dir.index
        self.encoder: Encoder = index_dir.encoder
        self.archive = archive
        self.limits = limits or QueryLimits()
        self.modality: str = self.encoder.modality
        self.metric: str = self.index.metric
        self.lock = RWLock()
        self.table = ItemTable(archive)
        self.nomenclature = archive.nomenclature
        self.matcher = TextMatcher(self.nomenclature)
        self._classes = list(self.nomenclature.classes)

    @classmethod
    def open(cls, index_path: str | Path, archive: Archive | str | Path | None = None,
             model: str | Path | None = None, limits: QueryLimits | None = None) -> SearchEngine:
        """Open an INDEX directory over ``archive`` (default: the one recorded in it); ``model`` replaces the
        saved encoder."""
        idx = IndexDir.open(index_path, model=model)
        arch = idx.archive(archive)
        if arch is None:
            raise RsirError(f"{index_path}: its archive {idx.manifest.get('archive')} is gone; pass the archive "
                            "(--archive) to search it")
        arch.spec(idx.encoder.modality)
        return cls(idx, arch, limits)

    # -- items --------------------------------------------------------------------------------------------------
    @property
    def spec(self) -> ModalitySpec:
        """The indexed modality's bands, shapes and grid."""
        return self.archive.spec(self.modality)

    def position(self, item_id: str) -> int:
        """Row of an item id; NotFoundError names it when absent."""
        p = self.table.pos.get(str(item_id))
        if p is None:
            raise NotFoundError(f"id {item_id!r} is not in the archive")
        return p

    def item_record(self, p: int) -> dict[str, Any]:
        """Metadata of the item at row ``p``."""
        t = self.table
        bbox = t.bbox[p]
        lon, lat = float(t.lon[p]), float(t.lat[p])
        return {"id": t.ids[p], "labels": self.nomenclature.decode(t.labels[p]), "split": t.split[p],
                "country": t.country[p], "date": t.date[p],
                "lon": lon if np.isfinite(lon) else None, "lat": lat if np.isfinite(lat) else None,
                "bbox": [float(x) for x in bbox] if np.isfinite(bbox).all() else None,
                "modalities": list(t.modalities[p]), "added": p >= t.n_archive}

    def quicklook(self, p: int, modality: str | None = None) -> np.ndarray:
        """H x W x 3 uint8 quicklook of the item at row ``p`` (an added item's from its uploaded bands)."""
        from rsir.data.bands import quicklook

        if p >= self.table.n_archive:
            return quicklook(self.table.added[self.table.ids[p]]["_bands"])
        mods = self.table.modalities[p]
        m = modality or (self.modality if self.modality in mods else (mods[0] if mods else None))
        return self.archive.quicklook(p, m)

    def captions(self, p: int) -> list[str]:
        """Captions stored with an archive item (none for added items)."""
        if p >= self.table.n_archive:
            return []
        caps = self.table.captions.iat[p]
        return [str(c) for c in caps] if caps is not None else []

    # -- ranking ------------------------------------------------------------------------------------------------
    def check_page(self, k: int, offset: int) -> None:
        """k and offset within the limits (QueryError otherwise)."""
        if not 1 <= k <= self.limits.max_k:
            raise QueryError(f"k must be between 1 and {self.limits.max_k}, got {k}")
        if not 0 <= offset <= self.limits.max_offset:
            raise QueryError(f"offset must be between 0 and {self.limits.max_offset}, got {offset}")

    def filter_mask(self, filters: Filters | None) -> np.ndarray | None:
        """Boolean mask of the items passing ``filters`` (None when no filter is set)."""
        return None if filters is None else self.table.filter_mask(filters, self._classes, self.nomenclature.name)

    def knn(self, vec: np.ndarray, need: int, mask: np.ndarray | None, exclude: int | None
            ) -> list[tuple[int, float]]:
        """The ``need`` nearest items passing ``mask`` (and not ``exclude``), best first, as (row, distance)."""
        n = len(self.index)
        if n == 0:
            return []
        extra = 1 if exclude is not None else 0
        kk = min(n, need + extra if mask is None else max(4 * (need + extra), 64))
        while True:
            dist, ids = self.index.search(vec[None], kk)
            out: list[tuple[int, float]] = []
            for d, i in zip(dist[0].tolist(), ids[0].tolist(), strict=True):
                if i is None or (isinstance(i, int) and i < 0):
                    continue
                p = self.table.pos.get(str(i))
                if p is None or p == exclude or (mask is not None and not mask[p]):
                    continue
                out.append((p, d))
                if len(out) >= need:
                    return out
            if kk >= n:
                return out
            kk = min(n, kk * 4)

    def _page(self, mode: str, ranked: Sequence[tuple[int, float | None]], k: int, offset: int,
              query_labels: np.ndarray | None, mask: np.ndarray | None, t0: float, query: dict[str, Any]
              ) -> Results:
        qset = query_labels.astype(bool) if query_labels is not None and query_labels.any() else None
        hits = []
        for r, (p, d) in enumerate(ranked[offset:offset + k], start=offset + 1):
            shares = None if qset is None else bool((self.table.labels[p].astype(bool) & qset).any())
            dist = None if d is None else (int(d) if self.metric == "hamming" else float(d))
            rec = self.item_record(p)
            hits.append(Hit(r, p, rec["id"], dist, rec["labels"], shares, rec))
        matching = int(mask.sum()) if mask is not None else len(self.table)
        return Results(mode, hits, k, offset, self.metric if mode != "label-match" else "label overlap",
                       matching, (time.perf_counter() - t0) * 1000, query)

    def search_vector(self, vec: np.ndarray, k: int = 10, offset: int = 0, filters: Filters | None = None,
                      query_labels: np.ndarray | None = None, exclude: int | None = None, mode: str = "vector",
                      query: dict[str, Any] | None = None, t0: float | None = None) -> Results:
        """Results for a code (packed uint8) or float vector as the encoder produces it."""
        t0 = time.perf_counter() if t0 is None else t0
        self.check_page(k, offset)
        v = np.asarray(vec)
        if v.ndim == 2 and v.shape[0] == 1:
            v = v[0]
        with self.lock.read():
            mask = self.filter_mask(filters)
            ranked = self.knn(v, offset + k, mask, exclude)
            return self._page(mode, ranked, k, offset, query_labels, mask, t0, query or {})

    def search_id(self, item_id: str, k: int = 10, offset: int = 0, filters: Filters | None = None,
                  include_query: bool = False) -> Results:
        """Results for an indexed item (its stored code is the query); the item itself is left out unless
        ``include_query``."""
        t0 = time.perf_counter()
        with self.lock.read():
            p = self.position(item_id)
            vec = self.index.get([str(item_id)])[0]
            labels = self.table.labels[p]
            query = self.item_record(p)
        return self.search_vector(vec, k, offset, filters, labels, None if include_query else p, "id", query, t0)

    # -- images ---------------------------------------------------------------------------------------------
    def encode_raw(self, image: np.ndarray) -> np.ndarray:
        """Index vector of one raw (not normalised) C x H x W image on the modality's grid."""
        mean, std = self.archive.band_stats(self.modality)
        x = normalize(np.asarray(image, dtype=np.float32), mean, std)
        return np.asarray(self.encoder.encode(x[None]))[0]

    def encode_bands(self, bands: Mapping[str, np.ndarray]) -> np.ndarray:
        """Index vector of one image given as raw band arrays (resampled to the grid, then normalised)."""
        spec = self.spec
        missing = [b for b in spec.bands if b not in bands]
        if missing:
            raise UploadError(f"modality {spec.name} needs bands {', '.join(spec.bands)}; missing "
                              f"{', '.join(missing)}")
        return self.encode_raw(to_grid({b: np.asarray(bands[b]) for b in spec.bands}, spec.bands, spec.grid))

    def search_bands(self, bands: Mapping[str, np.ndarray], k: int = 10, offset: int = 0,
                     filters: Filters | None = None) -> Results:
        """Results for an image that need not be in the archive, as raw band arrays."""
        t0 = time.perf_counter()
        return self.search_vector(self.encode_bands(bands), k, offset, filters, mode="image", t0=t0)

    def parse(self, filename: str, data: bytes, max_bytes: int = LOCAL_FILE_LIMIT) -> ParsedUpload:
        """Parse an image file's bytes for this index's modality (rsir.data.uploads)."""
        return parse_upload(filename, data, self.spec, max_bytes)

    def search_upload(self, filename: str, data: bytes, k: int = 10, offset: int = 0,
                      filters: Filters | None = None, max_bytes: int = LOCAL_FILE_LIMIT
                      ) -> tuple[Results, ParsedUpload]:
        """Results for an image file's bytes, with the parsed upload (for its quicklook)."""
        t0 = time.perf_counter()
        self.check_page(k, offset)
        parsed = self.parse(filename, data, max_bytes)
        vec = self.encode_raw(parsed.image)
        query = {"filename": filename, "format": parsed.source_format, "labels": []}
        return self.search_vector(vec, k, offset, filters, mode="upload", query=query, t0=t0), parsed

    def search_file(self, path: str | Path, k: int = 10, offset: int = 0, filters: Filters | None = None
                    ) -> Results:
        """Results for a local image file (GeoTIFF, .npz of band arrays, PNG/JPEG for RGB models)."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise UploadError(f"{path}: cannot read ({e.strerror or e})") from None
        try:
            res, _ = self.search_upload(path.name, data, k, offset, filters)
        except UploadError as e:
            raise UploadError(f"{path}: {e}", e.status) from None
        res.mode = "file"
        return res

    # -- text (label matcher until a text-image model exists) ---------------------------------------------
    def search_text(self, text: str, k: int = 10, offset: int = 0, filters: Filters | None = None
                    ) -> tuple[Results, TextMatch]:
        """Items ranked by how well their labels match the classes a sentence names (rsir.query.text)."""
        t0 = time.perf_counter()
        self.check_page(k, offset)
        match = self.matcher.match(text)
        with self.lock.read():
            mask = self.filter_mask(filters)
            pos, sat, _jac = self.matcher.rank(match, self.table.labels, mask)
            ranked: list[tuple[int, float | None]] = [(int(p), None) for p in pos[:offset + k]]
            query = {"text": text, "labels": match.labels,
                     "concepts": [{"phrase": c.phrase, "labels": c.labels} for c in match.concepts]}
            res = self._page("label-match", ranked, k, offset, self.nomenclature.encode(match.labels), None, t0,
                             query)
        res.matching = int(len(pos))
        for h, s in zip(res.hits, sat[offset:offset + k].tolist(), strict=True):
            h.item["concepts_matched"] = int(s)
        return res, match

    # -- one entry point for the Python API ----------------------------------------------------------------
    def search(self, id: str | None = None, *, image: Mapping[str, np.ndarray] | None = None,
               file: str | Path | None = None, vector: np.ndarray | None = None, text: str | None = None,
               k: int = 10, offset: int = 0, filters: Filters | dict[str, Any] | None = None) -> Results:
        """Search by exactly one of: an archive ``id``, raw band arrays ``image``, an image ``file``, a code or
        float ``vector``, or a sentence ``text``."""
        given = [n for n, v in (("id", id), ("image", image), ("file", file), ("vector", vector), ("text", text))
                 if v is not None]
        if len(given) != 1:
            raise QueryError(f"give exactly one of id, image, file, vector or text (got {', '.join(given) or 'none'})")
        flt = filters if isinstance(filters, Filters) or filters is None else Filters.from_json(filters)
        if id is not None:
            return self.search_id(id, k, offset, flt)
        if image is not None:
            return self.search_bands(image, k, offset, flt)
        if file is not None:
            return self.search_file(file, k, offset, flt)
        if text is not None:
            return self.search_text(text, k, offset, flt)[0]
        return self.search_vector(np.asarray(vector), k, offset, flt)

    def vectors(self, ids: list[str]) -> np.ndarray:
        """Stored codes / vectors of indexed items, in the order given."""
        return self.index_dir.vectors(ids)

    # -- adding items ---------------------------------------------------------------------------------------
    def add_item(self, item_id: str, parsed: ParsedUpload, labels: list[str], meta: dict[str, Any]) -> int:
        """Add a parsed image under a new id (in memory: it is not written to the archive or the index files).
        Returns its row."""
        for lab in labels:
            if lab not in self._classes:
                raise QueryError(f"unknown label {lab!r} (not in the {self.nomenclature.name} nomenclature)")
        vec = self.encode_raw(parsed.image)
        with self.lock.write():
            if item_id in self.table.pos:
                raise ConflictError(f"id {item_id!r} is already in the archive")
            self.index.add([item_id], vec[None])
            self.table.append(item_id, self.nomenclature.encode(labels), self.modality,
                              {**meta, "_bands": parsed.bands})
            return self.table.pos[item_id]
