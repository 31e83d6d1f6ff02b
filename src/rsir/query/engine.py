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

Durability: an engine opened with ``durable=True`` writes every add and delete to the INDEX directory's journal
(:mod:`rsir.query.journal`, fsynced) before applying it and answering; every open replays the journal, so what was
acknowledged survives a restart or a SIGKILL. Writers are serialised by a mutex held while the journal is
written (searches go on meanwhile); only the in-memory apply takes the write lock.
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
from rsir.data.uploads import ParsedUpload, UploadError, describe_spec, parse_upload
from rsir.encoding import Encoder
from rsir.errors import NotFoundError, RsirError
from rsir.index import Index
from rsir.pipeline import IndexDir, index_attributes
from rsir.query.items import ConflictError, Filters, ItemTable, QueryError, finite_or_nan, pushdown_filter
from rsir.query.journal import Journal, Record, live_records, read_records
from rsir.query.text import TextMatch, TextMatcher, text_route

if TYPE_CHECKING:
    import pandas as pd

#: an upload read from a local file by the CLI or the API may be this large
LOCAL_FILE_LIMIT = 2 << 30


@dataclass(frozen=True)
class QueryLimits:
    """Bounds on what one query may ask for (the service passes its own, tighter ones)."""

    max_k: int = 100_000
    max_offset: int = 1_000_000
    max_radius_hits: int = 100_000  # a radius query returns every hit up to this many (``within`` counts all)


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

    mode: str  # id | vector | image | upload | file | text | label-match
    hits: list[Hit]
    k: int
    offset: int
    metric: str
    matching: int  # items passing the filters (all items without filters)
    query_ms: float
    query: dict[str, Any] = field(default_factory=dict)
    direction: str = ""  # "s1->s2" etc. for a cross-modal index (query modality -> result modality)
    radius: int | None = None  # set for "all within Hamming distance r" queries
    within: int | None = None  # radius queries: items within r passing the filters (every one is ranked)

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
        out = {"mode": self.mode, "query": self.query, "results": [h.to_json() for h in self.hits],
               "precision": self.precision, "k": self.k, "offset": self.offset, "metric": self.metric,
               "query_ms": self.query_ms, "matching": self.matching,
               **({"radius": self.radius, "within": self.within} if self.radius is not None else {})}
        if self.direction:
            out["direction"] = self.direction
        return out

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
        #: modalities whose codes the index holds; with two or more (ss-cm) the index keys are "<modality>/<id>"
        #: and every query has a ``from`` (query) and a ``target`` (result) modality
        self.modalities: list[str] = index_dir.modalities
        self.cross = len(self.modalities) > 1
        self.metric: str = self.index.metric
        self.lock = RWLock()
        self.table = ItemTable(archive)
        self.nomenclature = archive.nomenclature
        self.matcher = TextMatcher(self.nomenclature)
        self._classes = list(self.nomenclature.classes)
        self._caption_rows: dict[str, list[str]] | None = None
        self._index_rows: tuple[tuple[int, int, int], np.ndarray] | None = None
        self.journal: Journal | None = None
        self._writer = threading.Lock()  # one add / delete at a time (journal order = apply order)

    @classmethod
    def open(cls, index_path: str | Path, archive: Archive | str | Path | None = None,
             model: str | Path | None = None, limits: QueryLimits | None = None, durable: bool = False
             ) -> SearchEngine:
        """Open an INDEX directory over ``archive`` (default: the one recorded in it) and replay its journal;
        ``model`` replaces the saved encoder. ``durable``: adds and deletes are journaled (this process becomes
        the journal's one writer)."""
        idx = IndexDir.open(index_path, model=model)
        arch = idx.archive(archive)
        if arch is None:
            raise RsirError(f"{index_path}: its archive {idx.manifest.get('archive')} is gone; pass the archive "
                            "(--archive) to search it")
        arch.spec(idx.encoder.modality)
        eng = cls(idx, arch, limits)
        index = eng.index
        if durable:
            journal, records = Journal.open_writer(idx.path)
            try:
                # compact first, then replay: a reader replaying the journal later sees the same record order
                live = live_records(records, set(map(str, eng._base_ids)))
                if len(live) < len(records):
                    journal.compact(live)
                if hasattr(index, "reconcile"):  # an external store (Milvus): drop rows of earlier runs, re-add
                    index.reconcile()
                eng._replay(live)
            except BaseException:
                journal.close()
                raise
            eng.journal = journal
        elif hasattr(index, "bookkeeping_only"):  # the writer has applied them to the external store already
            with index.bookkeeping_only():
                eng._replay(read_records(idx.path))
        else:
            eng._replay(read_records(idx.path))
        return eng

    @property
    def _base_ids(self) -> list[str]:
        return self.table.ids[:self.table.n_archive]

    def _replay(self, records: list[Record]) -> None:
        for rec in records:
            self._apply(rec)

    def _apply(self, rec: Record) -> None:
        """Apply one journal record to the index and the table (caller holds the write lock or is opening)."""
        if rec.op == "add":
            assert rec.vector is not None
            if rec.id in self.table.pos:  # replaying over an index that already holds it (should not happen)
                raise RsirError(f"journal adds {rec.id!r}, which the index already holds")
            key = self.key(rec.id, self.modality)
            if hasattr(self.index, "add_with_attributes"):  # a filtering backend stores the fields as well
                lon, lat = rec.meta.get("lon", ""), rec.meta.get("lat", "")
                attrs = index_attributes(self.nomenclature.encode(rec.labels)[None], [rec.meta.get("split", "")],
                                         [rec.meta.get("country", "")], [rec.meta.get("date", "")],
                                         [finite_or_nan(lon)], [finite_or_nan(lat)], [None])
                self.index.add_with_attributes([key], rec.vector[None], attrs)
            else:
                self.index.add([key], rec.vector[None])
            self.table.append(rec.id, self.nomenclature.encode(rec.labels), self.modality,
                              {**rec.meta, "_bands": rec.bands or {}})
        else:
            # an archive item of a cross-modal index has a code per modality (absent keys are ignored)
            self.index.remove([self.key(rec.id, m) for m in self.modalities] if self.cross else [rec.id])
            self.table.delete(rec.id)

    def close(self) -> None:
        """Release the journal (a durable engine's lock) and a backend's connection; searching still works,
        writing does not."""
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        if hasattr(self.index, "close"):  # a Milvus connection (reconnects if searched again)
            self.index.close()

    # -- items --------------------------------------------------------------------------------------------------
    @property
    def spec(self) -> ModalitySpec:
        """The indexed modality's bands, shapes and grid."""
        return self.archive.spec(self.modality)

    def check_modality(self, modality: str | None, role: str = "from") -> str:
        """A modality of this index (default: its own); QueryError naming what the index holds otherwise."""
        m = (modality or self.modality).lower()
        if m not in self.modalities:
            held = ", ".join(self.modalities)
            hint = "" if self.cross else " (a cross-modal query needs an index built with a cross-modal model: " \
                                         "rsir train --method ss-cm, then rsir index --model)"
            raise QueryError(f"--{role} {m}: this index holds {held} codes only{hint}")
        return m

    def directions(self, from_: str | None, target: str | None) -> tuple[str, str]:
        """(query modality, result modality): ``target`` defaults to ``from_``, which defaults to the index's."""
        f = self.check_modality(from_, "from")
        return f, self.check_modality(target or f, "target")

    def key(self, item_id: str, modality: str) -> str:
        """The index key of an item's code in ``modality``."""
        return f"{modality}/{item_id}" if self.cross else str(item_id)

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
        """Boolean mask of the items passing ``filters`` (None when no filter is set and nothing was deleted)."""
        if filters is None:
            return None if self.table.alive.all() else self.table.alive.copy()
        return self.table.filter_mask(filters, self._classes, self.nomenclature.name)

    def knn(self, vec: np.ndarray, need: int, mask: np.ndarray | None, exclude: int | None,
            target: str | None = None) -> list[tuple[int, float]]:
        """The ``need`` nearest items passing ``mask`` (and not ``exclude``), best first, as (row, distance); in
        a cross-modal index only the codes of ``target`` are ranked."""
        n = len(self.index)
        if n == 0:
            return []
        extra = 1 if exclude is not None else 0
        prefix = f"{target or self.modality}/" if self.cross else ""
        spread = len(self.modalities) if self.cross else 1  # the other modalities' codes are skipped
        kk = min(n, spread * (need + extra) if mask is None else max(4 * spread * (need + extra), 64))
        while True:
            dist, ids = self.index.search(vec[None], kk)
            out: list[tuple[int, float]] = []
            for d, i in zip(dist[0].tolist(), ids[0].tolist(), strict=True):
                if i is None or (isinstance(i, int) and i < 0):
                    continue
                if prefix:
                    if not str(i).startswith(prefix):
                        continue
                    i = str(i)[len(prefix):]
                p = self.table.pos.get(str(i))
                if p is None or p == exclude or (mask is not None and not mask[p]):
                    continue
                out.append((p, d))
                if len(out) >= need:
                    return out
            if kk >= n:
                return out
            kk = min(n, kk * 4)

    def within(self, vec: np.ndarray, radius: int, mask: np.ndarray | None, exclude: int | None
               ) -> tuple[list[tuple[int, float]], int]:
        """Every item within Hamming distance ``radius`` passing ``mask`` (not ``exclude``), best first (ties in
        index order), as (row, distance), at most ``limits.max_radius_hits`` of them; and how many there are."""
        if self.metric != "hamming":
            raise QueryError("radius queries need a Hamming index (binary codes)")
        if not 0 <= radius <= self.index.dim:
            raise QueryError(f"radius must be between 0 and {self.index.dim} bits, got {radius}")
        if len(self.index) == 0:
            return [], 0
        dist, pos = self.index.range_search_positions(vec[None], radius)[0]
        rows = self.index_rows()[pos]  # tens of thousands of hits: one array lookup, not one dict lookup each
        keep = rows >= 0
        if exclude is not None:
            keep &= rows != exclude
        if mask is not None:
            keep &= mask[np.where(keep, rows, 0)]
        rows, dist = rows[keep], dist[keep]
        cap = self.limits.max_radius_hits
        return list(zip(rows[:cap].tolist(), dist[:cap].tolist(), strict=True)), int(rows.size)

    def index_rows(self) -> np.ndarray:
        """Table row of each index position (-1: not an item of the table), rebuilt after items are added or
        deleted (the lengths it is keyed on change with every add and delete)."""
        key = (len(self.index), len(self.table.ids), len(self.table.pos))
        if self._index_rows is None or self._index_rows[0] != key:
            import pandas as pd

            live = self.table.pos  # the live items' rows (deleted ids are not in it, a re-added id once)
            at = pd.Index(list(live)).get_indexer(pd.Index(np.asarray(self.index.ids).astype(str)))
            row_of = np.append(np.fromiter(live.values(), dtype=np.int64, count=len(live)), -1)
            self._index_rows = (key, row_of[at])  # get_indexer's -1 (not a live item) reads the appended -1
        return self._index_rows[1]

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
                      query: dict[str, Any] | None = None, t0: float | None = None, from_: str | None = None,
                      target: str | None = None, radius: int | None = None) -> Results:
        """Results for a code (packed uint8) or float vector as the encoder produces it; in a cross-modal index
        the vector is taken as one of ``from_`` and the codes of ``target`` are ranked. With ``radius``, the page
        ``offset:offset + k`` of every item within that Hamming distance (``Results.within`` counts them)."""
        t0 = time.perf_counter() if t0 is None else t0
        self.check_page(k, offset)
        f, t = self.directions(from_, target)
        v = np.asarray(vec)
        if v.ndim == 2 and v.shape[0] == 1:
            v = v[0]
        with self.lock.read():
            mask = self.filter_mask(filters)
            if radius is not None:
                if self.cross:
                    raise QueryError("radius queries are for single-modality indexes")
                ranked, total = self.within(v, int(radius), mask, exclude)
                res = self._page(mode, ranked, k, offset, query_labels, mask, t0, query or {})
                res.radius, res.within = int(radius), total
                return res
            if (filters is not None and mask is not None and hasattr(self.index, "filtered_search")
                    and not self.cross and not (filters.near or filters.season or filters.months)):
                ranked = self.knn_pushed(v, offset + k, filters, exclude)
            else:
                ranked = self.knn(v, offset + k, mask, exclude, t)
            res = self._page(mode, ranked, k, offset, query_labels, mask, t0, query or {})
        if self.cross:
            res.direction = f"{f}->{t}"
        return res

    def knn_pushed(self, vec: np.ndarray, need: int, filters: Filters, exclude: int | None
                   ) -> list[tuple[int, float]]:
        """``knn`` with the filters applied inside the backend's search (Milvus): the same ranking, without
        asking for more neighbours until enough pass."""
        where = pushdown_filter(filters, self._classes, self.nomenclature.name)
        kk = min(len(self.index), need + (1 if exclude is not None else 0))
        if kk < 1:
            return []
        dist, ids = self.index.filtered_search(vec[None], kk, where)  # type: ignore[attr-defined]
        out: list[tuple[int, float]] = []
        for d, i in zip(dist[0].tolist(), ids[0].tolist(), strict=True):
            p = None if i is None or (isinstance(i, int) and i < 0) else self.table.pos.get(str(i))
            if p is not None and p != exclude:
                out.append((p, d))
        return out[:need]

    def search_id(self, item_id: str, k: int = 10, offset: int = 0, filters: Filters | None = None,
                  include_query: bool = False, from_: str | None = None, target: str | None = None,
                  radius: int | None = None) -> Results:
        """Results for an indexed item (its stored code is the query); the item itself is left out unless
        ``include_query``. Across modalities (``from_`` != ``target``) the item's own partner in ``target`` is a
        different image and stays in the ranking."""
        t0 = time.perf_counter()
        f, t = self.directions(from_, target)
        with self.lock.read():
            p = self.position(item_id)
            try:
                vec = self.index.get([self.key(item_id, f)])[0]
            except NotFoundError:
                raise NotFoundError(f"id {item_id!r} has no {f} code in this index") from None
            labels = self.table.labels[p]
            query = self.item_record(p)
        exclude = None if include_query or f != t else p
        return self.search_vector(vec, k, offset, filters, labels, exclude, "id", query, t0, f, t, radius)

    # -- images ---------------------------------------------------------------------------------------------
    def encode_raw(self, image: np.ndarray, modality: str | None = None) -> np.ndarray:
        """Index vector of one raw (not normalised) C x H x W image on the modality's grid."""
        m = self.check_modality(modality)
        mean, std = self.archive.band_stats(m)
        x = normalize(np.asarray(image, dtype=np.float32), mean, std)
        if self.cross:
            return np.asarray(self.encoder.encode(x[None], m))[0]  # type: ignore[call-arg]
        return np.asarray(self.encoder.encode(x[None]))[0]

    def encode_bands(self, bands: Mapping[str, np.ndarray], modality: str | None = None) -> np.ndarray:
        """Index vector of one image given as raw band arrays (resampled to the grid, then normalised)."""
        spec = self.archive.spec(self.check_modality(modality))
        missing = [b for b in spec.bands if b not in bands]
        if missing:
            raise UploadError(f"modality {spec.name} needs bands {', '.join(spec.bands)}; missing "
                              f"{', '.join(missing)}")
        return self.encode_raw(to_grid({b: np.asarray(bands[b]) for b in spec.bands}, spec.bands, spec.grid),
                               spec.name)

    def search_bands(self, bands: Mapping[str, np.ndarray], k: int = 10, offset: int = 0,
                     filters: Filters | None = None, from_: str | None = None, target: str | None = None
                     ) -> Results:
        """Results for an image that need not be in the archive, as raw band arrays of ``from_``."""
        t0 = time.perf_counter()
        f, t = self.directions(from_, target)
        return self.search_vector(self.encode_bands(bands, f), k, offset, filters, mode="image", t0=t0,
                                  from_=f, target=t)

    def parse(self, filename: str, data: bytes, max_bytes: int = LOCAL_FILE_LIMIT,
              modality: str | None = None) -> ParsedUpload:
        """Parse an image file's bytes for a modality of this index (rsir.data.uploads)."""
        return parse_upload(filename, data, self.archive.spec(self.check_modality(modality)), max_bytes)

    def upload_modality(self, filename: str, data: bytes, max_bytes: int = LOCAL_FILE_LIMIT
                        ) -> tuple[str, ParsedUpload]:
        """(modality, parsed upload) of a file for a cross-modal index queried without ``from``: the modality
        whose bands the file holds (e.g. 2 bands VV, VH: s1). The error of the closest modality otherwise."""
        errors: list[tuple[str, UploadError]] = []
        for m in self.modalities:
            try:
                return m, self.parse(filename, data, max_bytes, m)
            except UploadError as e:
                errors.append((m, e))
        # a band-count mismatch says little; an error about the content (units, pixels) names the real problem
        for _m, err in errors:
            if "bands, the index's encoder expects" not in str(err):
                raise err
        raise UploadError(f"{errors[0][1]} (this cross-modal index takes "
                          + " or ".join(describe_spec(self.archive.spec(m)) for m in self.modalities) + ")",
                          errors[0][1].status)

    def search_upload(self, filename: str, data: bytes, k: int = 10, offset: int = 0,
                      filters: Filters | None = None, max_bytes: int = LOCAL_FILE_LIMIT,
                      from_: str | None = None, target: str | None = None, radius: int | None = None
                      ) -> tuple[Results, ParsedUpload]:
        """Results for an image file's bytes, with the parsed upload (for its quicklook). In a cross-modal
        index without ``from_`` the file's bands say which modality it is. ``radius`` as in search_vector."""
        t0 = time.perf_counter()
        self.check_page(k, offset)
        if self.cross and from_ is None:
            self.directions(None, target)  # a bad target is named before the file is parsed
            from_, parsed = self.upload_modality(filename, data, max_bytes)
        else:
            from_ = self.check_modality(from_)
            parsed = self.parse(filename, data, max_bytes, from_)
        f, t = self.directions(from_, target)
        vec = self.encode_raw(parsed.image, f)
        query = {"filename": filename, "format": parsed.source_format, "labels": []}
        if self.cross:
            query["modality"] = f
        return self.search_vector(vec, k, offset, filters, mode="upload", query=query, t0=t0, from_=f,
                                  target=t, radius=radius), parsed

    def search_file(self, path: str | Path, k: int = 10, offset: int = 0, filters: Filters | None = None,
                    from_: str | None = None, target: str | None = None) -> Results:
        """Results for a local image file (GeoTIFF, .npz of band arrays, PNG/JPEG for RGB models)."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise UploadError(f"{path}: cannot read ({e.strerror or e})") from None
        try:
            res, _ = self.search_upload(path.name, data, k, offset, filters, from_=from_, target=target)
        except UploadError as e:
            raise UploadError(f"{path}: {e}", e.status) from None
        res.mode = "file"
        return res

    # -- text: a text-image model's codes when the index has one, else the label matcher ---------------------
    @property
    def text_model(self) -> str | None:
        """Name of the text-image model that answers text queries (None: the label matcher answers)."""
        return str(self.index_dir.method) if self.index_dir.has_text else None

    def search_text(self, text: str, k: int = 10, offset: int = 0, filters: Filters | None = None,
                    max_chars: int = 512, mode: str | None = None) -> tuple[Results, TextMatch]:
        """Items for a sentence, answered by one of two parts (rsir.query.text.text_route; ``mode`` hybrid
        (default), learned or matcher): the learned codes rank the items by the Hamming distance of their image
        codes to the sentence's code (``Results.mode`` "text"; needs an index built with a text-image model), the
        label matcher ranks them by how well their labels match the classes the sentence names (``mode``
        "label-match"). In hybrid mode the matcher answers when it finds a class name or synonym, the learned
        codes otherwise. ``query["answered_by"]`` names the part ("label matcher" or the model's method),
        ``query["answered"]`` says it in words ("label matcher", "learned DUCH codes"), ``query["text_mode"]``
        gives the mode and ``query["why"]`` the reason."""
        t0 = time.perf_counter()
        self.check_page(k, offset)
        clean = " ".join(str(text).split())
        if not clean:
            raise QueryError("text is empty")
        if len(clean) > max_chars:
            raise QueryError(f"text is {len(clean)} characters long; at most {max_chars} are accepted")
        match = self.matcher.match(text)
        model = self.text_model
        try:
            route = text_route(match, mode, model is not None)
        except ValueError as e:
            raise QueryError(str(e)) from None
        mode = mode or "hybrid"
        found = ("classes matched: " + "; ".join(match.labels) if match.labels
                 else "no class name or synonym found")
        if model is None:
            why = "this index has no text-image model; " + found
        elif mode != "hybrid":
            why = f"mode {mode}" + (f"; {found}" if route == "matcher" else "")
        elif route == "matcher":
            why = f"hybrid; {found}"
        else:
            why = "hybrid; the label matcher found no class name or synonym"
        if route == "learned":
            vec = self.encoder.encode_text_query(clean, max_chars)  # type: ignore[attr-defined]
            learned: dict[str, Any] = {"text": text, "labels": [], "answered_by": model, "text_mode": mode,
                                       "answered": f"learned {str(model).upper()} codes", "why": why}
            return self.search_vector(vec, k, offset, filters, mode="text", query=learned, t0=t0), match
        with self.lock.read():
            mask = self.filter_mask(filters)
            pos, sat, _jac = self.matcher.rank(match, self.table.labels, mask)
            ranked: list[tuple[int, float | None]] = [(int(p), None) for p in pos[:offset + k]]
            query = {"text": text, "labels": match.labels, "answered_by": "label matcher", "text_mode": mode,
                     "answered": "label matcher", "why": why, "concepts": [{"phrase": c.phrase, "labels": c.labels} for c in match.concepts]}
            res = self._page("label-match", ranked, k, offset, self.nomenclature.encode(match.labels), None, t0,
                             query)
        res.matching = int(len(pos))
        for h, s in zip(res.hits, sat[offset:offset + k].tolist(), strict=True):
            h.item["concepts_matched"] = int(s)
        return res, match

    def nearest_captions(self, item_id: str | None = None, k: int = 5, text: str | None = None,
                         max_chars: int = 512) -> list[dict[str, Any]]:
        """The archive captions whose codes are nearest to an item's image code (``item_id``) or to a sentence's
        code (``text``): [{rank, caption_id, item_id, caption, distance, own}] (``own``: the caption belongs to
        the query item). Needs a text-image model (QueryError otherwise)."""
        if self.text_model is None:
            raise QueryError("this index has no text-image model, so it holds no caption codes "
                             "(build it with rsir index --model DUCH_MODEL)")
        if not 1 <= k <= self.limits.max_k:
            raise QueryError(f"k must be between 1 and {self.limits.max_k}, got {k}")
        if (item_id is None) == (text is None):
            raise QueryError("give exactly one of an item id or a text")
        if item_id is not None:
            with self.lock.read():
                self.position(item_id)
                vec = self.index.get([str(item_id)])[0]
        else:
            vec = self.encoder.encode_text_query(str(text), max_chars)  # type: ignore[attr-defined]
        cidx, rows = self.index_dir.caption_index()
        dist, ids = cidx.search(np.asarray(vec)[None], min(k, len(cidx)))
        if self._caption_rows is None:
            self._caption_rows = {r[0]: r for r in rows}
        by_id = self._caption_rows
        out = []
        for r, (d, cid) in enumerate(zip(dist[0].tolist(), ids[0].tolist(), strict=True), start=1):
            if cid is None or str(cid) not in by_id:
                continue
            row = by_id[str(cid)]
            out.append({"rank": r, "caption_id": row[0], "item_id": row[1], "caption": row[2], "distance": int(d),
                        "own": item_id is not None and row[1] == str(item_id)})
        return out

    # -- one entry point for the Python API ----------------------------------------------------------------
    def search(self, id: str | None = None, *, image: Mapping[str, np.ndarray] | None = None,
               file: str | Path | None = None, vector: np.ndarray | None = None, text: str | None = None,
               k: int = 10, offset: int = 0, filters: Filters | dict[str, Any] | None = None,
               from_: str | None = None, target: str | None = None, text_mode: str | None = None) -> Results:
        """Search by exactly one of: an archive ``id``, raw band arrays ``image``, an image ``file``, a code or
        float ``vector``, or a sentence ``text`` (answered as ``text_mode`` says: hybrid (default), learned or
        matcher; see search_text); ``from_`` / ``target`` pick the query and result modalities of a cross-modal
        index."""
        given = [n for n, v in (("id", id), ("image", image), ("file", file), ("vector", vector), ("text", text))
                 if v is not None]
        if len(given) != 1:
            raise QueryError(f"give exactly one of id, image, file, vector or text (got {', '.join(given) or 'none'})")
        flt = filters if isinstance(filters, Filters) or filters is None else Filters.from_json(filters)
        if id is not None:
            return self.search_id(id, k, offset, flt, from_=from_, target=target)
        if image is not None:
            return self.search_bands(image, k, offset, flt, from_, target)
        if file is not None:
            return self.search_file(file, k, offset, flt, from_, target)
        if text is not None:
            return self.search_text(text, k, offset, flt, mode=text_mode)[0]
        return self.search_vector(np.asarray(vector), k, offset, flt, from_=from_, target=target)

    def vectors(self, ids: list[str], modality: str | None = None) -> np.ndarray:
        """Stored codes / vectors of indexed items, in the order given (of ``modality`` in a cross-modal index)."""
        if self.index is not self.index_dir.index:  # a swapped-in model: its own vectors
            with self.lock.read():
                return np.asarray(self.index.get(np.array([str(i) for i in ids], dtype=object)))
        return self.index_dir.vectors(ids, modality or self.modality)

    def swap(self, index: Index, encoder: Encoder) -> None:
        """Replace the index and encoder at once (a retrained model); searches running now finish on the old
        ones, later ones use the new. Items added at run time are not in the new index (no raw images kept)."""
        with self.lock.write():
            self.index = index
            self.encoder = encoder
            self.metric = index.metric

    # -- adding items ---------------------------------------------------------------------------------------
    def add_item(self, item_id: str, parsed: ParsedUpload, labels: list[str], meta: dict[str, Any]) -> int:
        """Add a parsed image under a new id; returns its row. A durable engine has journaled it (fsynced) when
        this returns; otherwise it lives in memory only."""
        self._check_labels(labels)
        vec = np.asarray(self.encode_raw(parsed.image))
        return self.add_vector(item_id, vec, labels, meta, parsed.bands)

    def add_vector(self, item_id: str, vec: np.ndarray, labels: list[str], meta: dict[str, Any],
                   bands: Mapping[str, np.ndarray] | None = None) -> int:
        """Add an encoded item (its index vector) under a new id, journaled first when durable; returns its row."""
        self._check_labels(labels)
        rec = Record("add", str(item_id), np.asarray(vec), list(labels),
                     {k: v for k, v in meta.items() if not k.startswith("_")}, dict(bands) if bands else None)
        with self._writer:
            if rec.id in self.table.pos:
                raise ConflictError(f"id {item_id!r} is already in the archive")
            if self.journal is not None:
                self.journal.append(rec)
            with self.lock.write():
                self._apply(rec)
                return self.table.pos[rec.id]

    def _check_labels(self, labels: list[str]) -> None:
        for lab in labels:
            if lab not in self._classes:
                raise QueryError(f"unknown label {lab!r} (not in the {self.nomenclature.name} nomenclature)")

    def delete_item(self, item_id: str) -> None:
        """Remove an item (archive or added) from search results, journaled first when durable."""
        with self._writer:
            if str(item_id) not in self.table.pos:
                raise NotFoundError(f"id {item_id!r} is not in the archive")
            rec = Record("delete", str(item_id))
            if self.journal is not None:
                self.journal.append(rec)
            with self.lock.write():
                self._apply(rec)

    def compact_journal(self) -> int:
        """Rewrite a durable engine's journal as its live records; returns how many records it holds now."""
        if self.journal is None:
            return 0
        with self._writer:
            live = live_records(read_records(self.index_dir.path), set(self._base_ids))
            self.journal.compact(live)
            return len(live)
