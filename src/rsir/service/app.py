"""The search service: a FastAPI app over an archive and its index, and the static web page.

Concurrency: FastAPI runs the (synchronous) endpoints in a thread pool. Searches take the read side of a
readers-writer lock; adding an item encodes it outside the lock and then takes the write side only to append
the code to the index and the item to the table, so a search never sees an index and a table of different
lengths, and concurrent searches do not wait for each other.
"""

from __future__ import annotations

import base64
import math
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field

from rsir.data.archive import Archive, open_archive
from rsir.data.bands import normalize, png_bytes, quicklook
from rsir.errors import NotFoundError, RsirError
from rsir.service.text_query import TextMatcher
from rsir.service.uploads import UploadError, describe_spec, parse_upload

STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class ServiceLimits:
    """Bounds on what one request may ask for."""

    max_upload_bytes: int = 20 * 1024 * 1024
    max_k: int = 500
    max_offset: int = 10_000
    max_browse: int = 200
    max_text_chars: int = 500
    quicklook_cache: int = 2048


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


# -- request bodies ---------------------------------------------------------------------------------------------
class Filters(BaseModel):
    """Result filters; all given conditions must hold."""

    labels: list[str] = Field(default_factory=list, description="class names")
    labels_mode: Literal["any", "all"] = "any"
    split: str | None = None
    country: str | None = None
    date_from: str | None = Field(default=None, description="ISO date, inclusive")
    date_to: str | None = Field(default=None, description="ISO date, inclusive")
    bbox: list[float] | None = Field(default=None, description="[min_lon, min_lat, max_lon, max_lat]")


class IdQuery(BaseModel):
    id: str
    k: int = 20
    offset: int = 0
    filters: Filters = Field(default_factory=Filters)
    target_modality: str | None = None
    include_query: bool = False


class TextQuery(BaseModel):
    text: str
    k: int = 20
    offset: int = 0
    filters: Filters = Field(default_factory=Filters)


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class ItemTable:
    """Columns the filters and results need, for archive items and items added at run time."""

    def __init__(self, archive: Archive) -> None:
        cat = archive.catalog
        n = len(cat)
        self.ids: list[str] = list(archive.ids)
        self.pos: dict[str, int] = {i: p for p, i in enumerate(self.ids)}
        self.labels = archive.labels.copy()
        self.split = cat["split"].fillna("").astype(str).to_numpy(dtype=object)
        self.country = cat["country"].fillna("").astype(str).to_numpy(dtype=object)
        self.date = cat["date"].fillna("").astype(str).str.slice(0, 10).to_numpy(dtype=object)
        self.lon = cat["lon"].astype(float).to_numpy()
        self.lat = cat["lat"].astype(float).to_numpy()
        self.bbox = np.full((n, 4), np.nan)
        for p, b in enumerate(cat["bbox"]):
            if b is not None and len(b) == 4:
                self.bbox[p] = np.asarray(b, dtype=float)
        self.n_archive = n
        self.added: dict[str, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, item_id: str, labels_vec: np.ndarray, meta: dict[str, Any]) -> None:
        """Add one run-time item (new arrays are built, then swapped in)."""
        self.labels = np.concatenate([self.labels, labels_vec[None].astype(np.uint8)])
        self.split = np.append(self.split, str(meta.get("split", "")))
        self.country = np.append(self.country, str(meta.get("country", "")))
        self.date = np.append(self.date, str(meta.get("date", ""))[:10])
        self.lon = np.append(self.lon, _num(meta.get("lon")) or np.nan)
        self.lat = np.append(self.lat, _num(meta.get("lat")) or np.nan)
        self.bbox = np.concatenate([self.bbox, np.full((1, 4), np.nan)])
        self.pos[item_id] = len(self.ids)
        self.ids.append(item_id)
        self.added[item_id] = meta


class Service:
    """State behind the app: archive, searcher, item table, lock, token, limits."""

    def __init__(self, searcher: Any, token: str | None, limits: ServiceLimits, prefix: str = "") -> None:
        if searcher.archive is None:
            raise RsirError("the service needs the index's archive (for metadata, quicklooks and statistics)")
        self.searcher = searcher
        self.archive: Archive = searcher.archive
        self.index = searcher.index
        self.encoder = searcher.encoder
        self.token = token
        self.limits = limits
        self.prefix = prefix  # URL path this app is mounted under ("" at the root)
        self.lock = RWLock()
        self.table = ItemTable(self.archive)
        self.nom = self.archive.nomenclature
        self.matcher = TextMatcher(self.nom)
        self._ql: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._ql_lock = threading.Lock()
        self.higher_is_better = self.index.metric == "ip"

    # -- items ------------------------------------------------------------------------------------------------
    def position(self, item_id: str) -> int:
        p = self.table.pos.get(item_id)
        if p is None:
            raise NotFoundError(f"id {item_id!r} is not in the archive")
        return p

    def item_json(self, p: int, modality: str | None = None) -> dict[str, Any]:
        t = self.table
        item_id = t.ids[p]
        labels = self.nom.decode(t.labels[p])
        bbox = t.bbox[p]
        lon, lat = _num(t.lon[p]), _num(t.lat[p])
        if p < t.n_archive:
            mods = [str(m) for m in self.archive.catalog["modalities"].iat[p]]
        else:
            mods = [self.encoder.modality]
        qmod = modality if modality in mods else self.default_modality(mods)
        return {
            "id": item_id, "labels": labels, "split": t.split[p], "country": t.country[p], "date": t.date[p],
            "lon": lon, "lat": lat,
            "bbox": [float(x) for x in bbox] if np.isfinite(bbox).all() else None,
            "modalities": mods, "added": p >= t.n_archive,
            "quicklook": f"{self.prefix}/api/items/{item_id}/quicklook.png?modality={qmod}",
        }

    def default_modality(self, mods: list[str]) -> str:
        """Quicklook modality when none is asked for: the encoder's, else the first the item has."""
        if self.encoder.modality in mods:
            return str(self.encoder.modality)
        return mods[0] if mods else self.archive.primary_modality

    def quicklook_png(self, item_id: str, modality: str | None) -> bytes:
        p = self.position(item_id)
        if p >= self.table.n_archive:
            bands = self.table.added[item_id]["_bands"]
            key = (item_id, "upload")
        else:
            mods = [str(m) for m in self.archive.catalog["modalities"].iat[p]]
            m = modality or self.default_modality(mods)
            if m not in mods:
                raise NotFoundError(f"item {item_id!r} has no {m} data (it has {', '.join(mods) or 'none'})")
            key = (item_id, m)
            bands = None
        with self._ql_lock:
            if key in self._ql:
                self._ql.move_to_end(key)
                return self._ql[key]
        data = png_bytes(quicklook(bands) if bands is not None else self.archive.quicklook(p, key[1]))
        with self._ql_lock:
            self._ql[key] = data
            while len(self._ql) > self.limits.quicklook_cache:
                self._ql.popitem(last=False)
        return data

    # -- filters ----------------------------------------------------------------------------------------------
    def filter_mask(self, f: Filters) -> np.ndarray | None:
        """Boolean mask over the item table, or None when no filter is set."""
        t = self.table
        mask = np.ones(len(t), dtype=bool)
        used = False
        if f.labels:
            idx = []
            for lab in f.labels:
                if lab not in self.nom.classes:
                    raise HTTPException(422, f"unknown label {lab!r} (not in the {self.nom.name} nomenclature)")
                idx.append(self.nom.index(lab))
            sub = t.labels[:, idx].astype(bool)
            mask &= sub.all(1) if f.labels_mode == "all" else sub.any(1)
            used = True
        if f.split:
            mask &= t.split == f.split
            used = True
        if f.country:
            mask &= np.char.lower(t.country.astype(str)) == f.country.lower()
            used = True
        if f.date_from or f.date_to:
            d = t.date.astype(str)
            known = d != ""
            if f.date_from:
                known &= d >= f.date_from[:10]
            if f.date_to:
                known &= d <= f.date_to[:10]
            mask &= known
            used = True
        if f.bbox is not None:
            if len(f.bbox) != 4 or not all(math.isfinite(v) for v in f.bbox):
                raise HTTPException(422, "bbox must be 4 finite numbers [min_lon, min_lat, max_lon, max_lat]")
            x0, y0, x1, y1 = f.bbox
            b = t.bbox
            has_box = np.isfinite(b).all(1)
            inter = has_box & (b[:, 0] <= x1) & (b[:, 2] >= x0) & (b[:, 1] <= y1) & (b[:, 3] >= y0)
            centre = ~has_box & (t.lon >= x0) & (t.lon <= x1) & (t.lat >= y0) & (t.lat <= y1)
            mask &= inter | centre
            used = True
        return mask if used else None

    # -- ranking ----------------------------------------------------------------------------------------------
    def check_k(self, k: int, offset: int) -> None:
        if not 1 <= k <= self.limits.max_k:
            raise HTTPException(422, f"k must be between 1 and {self.limits.max_k}, got {k}")
        if not 0 <= offset <= self.limits.max_offset:
            raise HTTPException(422, f"offset must be between 0 and {self.limits.max_offset}, got {offset}")

    def knn(self, vec: np.ndarray, need: int, mask: np.ndarray | None, exclude: int | None
            ) -> list[tuple[int, float]]:
        """The ``need`` nearest items passing ``mask`` (and not ``exclude``), best first, as (position, distance).

        The index is asked for more neighbours until enough pass the filters or it is exhausted, so a filtered
        ranking is exactly the unfiltered ranking with the failing items removed.
        """
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
                p = self.table.pos.get(str(i)) if not isinstance(i, int) else i
                if p is None or p == exclude or (mask is not None and not mask[p]):
                    continue
                out.append((p, d))
                if len(out) >= need:
                    return out
            if kk >= n:
                return out
            kk = min(n, kk * 4)

    def results(self, ranked: list[tuple[int, float]], offset: int, query_labels: np.ndarray | None,
                modality: str | None) -> tuple[list[dict[str, Any]], float | None]:
        page = ranked[offset:]
        qset = query_labels.astype(bool) if query_labels is not None and query_labels.any() else None
        out = []
        shared = 0
        for r, (p, d) in enumerate(page, start=offset + 1):
            item = self.item_json(p, modality)
            item["rank"] = r
            item["distance"] = int(d) if self.index.metric == "hamming" else float(d)
            if qset is not None:
                s = bool((self.table.labels[p].astype(bool) & qset).any())
                item["shares_label"] = s
                shared += s
            else:
                item["shares_label"] = None
            out.append(item)
        precision = (shared / len(out)) if (qset is not None and out) else None
        return out, precision

    def encode(self, image: np.ndarray) -> np.ndarray:
        """Index vector of one raw CxHxW image on the encoder's grid (normalised with the archive stats)."""
        mean, std = self.archive.band_stats(self.encoder.modality)
        x = normalize(image.astype(np.float32), mean, std)
        return np.asarray(self.searcher.encode_image(x))[0]

    def check_auth(self, authorization: str | None) -> None:
        if self.token is None:
            raise HTTPException(403, "adding items is disabled: start the server with --token to allow it")
        if not authorization or not authorization.lower().startswith("bearer "):
            raise HTTPException(401, "this endpoint needs 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(authorization[7:].strip().encode(), self.token.encode()):
            raise HTTPException(403, "wrong token")


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    """Read an uploaded file, refusing (413) as soon as it passes the size limit."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await upload.read(1 << 20)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"upload is larger than the limit of {limit} bytes "
                                     f"({limit / 2**20:.1f} MB)")
        chunks.append(chunk)
    return b"".join(chunks)


def _open_searcher(archive_path: str | Path, index_path: str | Path, model: str | Path | None) -> Any:
    """The rsir.search Searcher of an INDEX dir over the given archive (optionally with a model's encoder)."""
    from rsir.search import Searcher, load_encoder

    searcher = Searcher.open(index_path, archive=open_archive(archive_path))
    if model is not None:
        # a model given on the command line replaces the encoder saved in the INDEX dir; it must produce the
        # same kind of vector the index holds
        enc = load_encoder("model", model)
        if (enc.metric, enc.dim) != (searcher.index.metric, searcher.index.dim):
            raise RsirError(f"model {model} makes {enc.dim}-dim {enc.metric} vectors, the index holds "
                            f"{searcher.index.dim}-dim {searcher.index.metric} vectors")
        searcher.encoder = enc
    return searcher


def create_app(archive_path: str | Path | None = None, index_path: str | Path | None = None,
               model: str | Path | None = None, token: str | None = None,
               limits: ServiceLimits | None = None, searcher: Any = None, prefix: str = "",
               collections: list[dict[str, Any]] | None = None) -> FastAPI:
    """The FastAPI app serving search over an archive and its index (or over a ready ``searcher``).

    ``prefix`` is the URL path the app is mounted under (see :func:`create_multi_app`) and ``collections`` the list
    of all collections served beside it, for the page's collection switcher.
    """
    limits = limits or ServiceLimits()
    if searcher is None:
        if archive_path is None or index_path is None:
            raise RsirError("create_app needs archive_path and index_path (or a searcher)")
        searcher = _open_searcher(archive_path, index_path, model)
    svc = Service(searcher, token, limits, prefix)
    # FastAPIOffline: the same FastAPI, with /docs and /redoc served from assets shipped in the package (no CDN)
    app = FastAPIOffline(title="rsir search", version="1", description="Search an Earth-observation archive by example "
                  "image, by upload and by text. Hash codes are compared by Hamming distance.")
    app.state.service = svc

    @app.exception_handler(RsirError)
    async def _rsir_error(request: Request, exc: RsirError) -> JSONResponse:
        if isinstance(exc, UploadError):
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)
        status = 404 if isinstance(exc, NotFoundError) else 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.middleware("http")
    async def _size_guard(request: Request, call_next: Any) -> Any:
        # refuse oversized bodies before the multipart parser spools them
        cl = request.headers.get("content-length")
        if request.method == "POST" and cl and cl.isdigit() and int(cl) > limits.max_upload_bytes + 65536:
            return JSONResponse({"detail": f"request body of {int(cl)} bytes is larger than the upload limit of "
                                           f"{limits.max_upload_bytes} bytes"}, status_code=413)
        return await call_next(request)

    def index_info() -> dict[str, Any]:
        return {"metric": svc.index.metric, "dim": svc.index.dim, "size": len(svc.index),
                "modality": svc.encoder.modality, "expects": describe_spec(svc.archive.spec(svc.encoder.modality)),
                "kind": type(svc.index).__name__}

    @app.get("/api/collections")
    def list_collections() -> list[dict[str, Any]]:
        """The collections (archive + index) this server answers for, each with the URL of its page."""
        return [{**c, "current": c["url"] == (prefix or "") + "/"} for c in collections or
                [{"name": svc.archive.path.name, "url": (prefix or "") + "/"}]]

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        """Liveness and sizes."""
        return {"status": "ok", "items": len(svc.table), "index": index_info()}

    @app.get("/api/stats")
    def stats() -> dict[str, Any]:
        """What the archive and index hold, for the page's filters and header."""
        with svc.lock.read():
            t = svc.table
            counts = t.labels.sum(0)
            dates = sorted(d for d in set(t.date.tolist()) if d)
            finite = np.isfinite(t.lon) & np.isfinite(t.lat)
            extent = ([float(t.lon[finite].min()), float(t.lat[finite].min()), float(t.lon[finite].max()),
                       float(t.lat[finite].max())] if finite.any() else None)
            return {
                "items": len(t), "added": len(t.added),
                "splits": {s or "(none)": int((t.split == s).sum()) for s in sorted(set(t.split.tolist()))},
                "countries": sorted(c for c in set(t.country.tolist()) if c),
                "labels": [{"name": c, "count": int(n)} for c, n in zip(svc.nom.classes, counts, strict=True)],
                "nomenclature": svc.nom.name, "modalities": list(svc.archive.modalities),
                "target_modalities": [svc.encoder.modality], "index": index_info(),
                "date_range": [dates[0], dates[-1]] if dates else None, "extent": extent,
                "text_mode": "label-match", "limits": limits.__dict__, "adding_items": svc.token is not None,
            }

    @app.get("/api/items")
    def items(offset: int = Query(0, ge=0), limit: int = Query(24, ge=1), split: str | None = None,
              labels: list[str] | None = Query(None), labels_mode: Literal["any", "all"] = "any",
              modality: str | None = None) -> dict[str, Any]:
        """Browse the archive (with optional split / label filters)."""
        if limit > limits.max_browse:
            raise HTTPException(422, f"limit must be at most {limits.max_browse}")
        labs = [x for v in labels or [] for x in v.split("|") if x]
        with svc.lock.read():
            mask = svc.filter_mask(Filters(labels=labs, labels_mode=labels_mode, split=split or None))
            pos = np.flatnonzero(mask) if mask is not None else np.arange(len(svc.table))
            page = pos[offset:offset + limit]
            return {"total": int(len(pos)), "offset": offset, "limit": limit,
                    "items": [svc.item_json(int(p), modality) for p in page]}

    @app.get("/api/random")
    def random_item(split: str | None = None) -> dict[str, Any]:
        """One item drawn at random (optionally from one split)."""
        with svc.lock.read():
            mask = svc.filter_mask(Filters(split=split or None))
            pos = np.flatnonzero(mask) if mask is not None else np.arange(len(svc.table))
            if not len(pos):
                raise HTTPException(404, f"no items in split {split!r}")
            return svc.item_json(int(pos[secrets.randbelow(len(pos))]))

    @app.get("/api/items/{item_id}")
    def item(item_id: str) -> dict[str, Any]:
        """Metadata of one item."""
        with svc.lock.read():
            p = svc.position(item_id)
            out = svc.item_json(p)
            if p < svc.table.n_archive:
                caps = svc.archive.catalog["captions"].iat[p]
                out["captions"] = [str(c) for c in caps] if caps is not None else []
            return out

    @app.get("/api/items/{item_id}/quicklook.png")
    def item_quicklook(item_id: str, modality: str | None = None) -> Response:
        """PNG quicklook (S2 true colour, S1 VV/VH/ratio false colour)."""
        if modality is not None and modality not in svc.archive.modalities:
            raise HTTPException(422, f"modality {modality!r} is not in this archive "
                                     f"(it has {', '.join(svc.archive.modalities)})")
        return Response(svc.quicklook_png(item_id, modality), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    def check_target(target: str | None) -> None:
        if target and target != svc.encoder.modality:
            raise HTTPException(422, f"target modality {target!r} is not indexed: this index holds "
                                     f"{svc.encoder.modality} codes")

    @app.post("/api/search/id")
    def search_id(q: IdQuery) -> dict[str, Any]:
        """Search by an archive item: its stored code is the query."""
        svc.check_k(q.k, q.offset)
        check_target(q.target_modality)
        t0 = time.perf_counter()
        with svc.lock.read():
            p = svc.position(q.id)
            vec = svc.index.get([q.id])[0]
            mask = svc.filter_mask(q.filters)
            ranked = svc.knn(vec, q.offset + q.k, mask, None if q.include_query else p)
            ms = (time.perf_counter() - t0) * 1000
            res, prec = svc.results(ranked, q.offset, svc.table.labels[p], q.target_modality)
            return {"mode": "id", "query": svc.item_json(p), "results": res, "precision": prec, "k": q.k,
                    "offset": q.offset, "metric": svc.index.metric, "query_ms": ms,
                    "matching": int(mask.sum()) if mask is not None else len(svc.table)}

    @app.post("/api/search/upload")
    async def search_upload(file: UploadFile = File(...), k: int = Form(20), offset: int = Form(0),
                            filters: str = Form("{}")) -> dict[str, Any]:
        """Search by an uploaded image: GeoTIFF, .npz of band arrays, or PNG/JPEG for RGB models."""
        svc.check_k(k, offset)
        try:
            flt = Filters.model_validate_json(filters or "{}")
        except ValueError as e:
            raise HTTPException(422, f"filters: {e}") from None
        data = await _read_limited(file, limits.max_upload_bytes)
        spec = svc.archive.spec(svc.encoder.modality)
        t0 = time.perf_counter()
        parsed = parse_upload(file.filename or "", data, spec, limits.max_upload_bytes)
        vec = svc.encode(parsed.image)
        with svc.lock.read():
            mask = svc.filter_mask(flt)
            ranked = svc.knn(vec, offset + k, mask, None)
            ms = (time.perf_counter() - t0) * 1000
            res, prec = svc.results(ranked, offset, None, None)
        ql = base64.b64encode(png_bytes(quicklook(parsed.bands))).decode()
        return {"mode": "upload", "query": {"filename": file.filename, "format": parsed.source_format,
                                            "quicklook": f"data:image/png;base64,{ql}", "labels": []},
                "results": res, "precision": prec, "k": k, "offset": offset, "metric": svc.index.metric,
                "query_ms": ms, "matching": int(mask.sum()) if mask is not None else len(svc.table)}

    @app.post("/api/search/text")
    def search_text(q: TextQuery) -> dict[str, Any]:
        """Search by a sentence; without a text-image model, by matching it against the label names."""
        svc.check_k(q.k, q.offset)
        if len(q.text) > limits.max_text_chars:
            raise HTTPException(422, f"text is longer than {limits.max_text_chars} characters")
        t0 = time.perf_counter()
        match = svc.matcher.match(q.text)
        with svc.lock.read():
            mask = svc.filter_mask(q.filters)
            pos, _sat, _jac = svc.matcher.rank(match, svc.table.labels, mask)
            ranked = [(int(p), 0.0) for p in pos[:q.offset + q.k]]
            ms = (time.perf_counter() - t0) * 1000
            qvec = svc.nom.encode(match.labels)
            res, prec = svc.results(ranked, q.offset, qvec, None)
            for r, sat in zip(res, _sat[q.offset:q.offset + q.k].tolist(), strict=True):
                r["distance"] = None
                r["concepts_matched"] = int(sat)
        return {"mode": "label-match", "query": {"text": q.text, "labels": match.labels,
                                                 "concepts": [{"phrase": c.phrase, "labels": c.labels}
                                                              for c in match.concepts]},
                "results": res, "precision": prec, "k": q.k, "offset": q.offset, "metric": "label overlap",
                "query_ms": ms, "matching": int(len(pos)),
                "note": None if match.concepts else "no class name or synonym found in the text"}

    @app.post("/api/items", status_code=201)
    async def add_item(file: UploadFile = File(...), id: str = Form(...), labels: str = Form(""),
                       lon: str = Form(""), lat: str = Form(""), date: str = Form(""), split: str = Form(""),
                       authorization: str | None = Header(None)) -> dict[str, Any]:
        """Add an uploaded patch to the index (needs the bearer token)."""
        svc.check_auth(authorization)
        item_id = id.strip()
        if not item_id or len(item_id) > 200 or "/" in item_id:
            raise HTTPException(422, "id must be 1-200 characters without '/'")
        labs = [x.strip() for x in labels.split("|") if x.strip()]
        for lab in labs:
            if lab not in svc.nom.classes:
                raise HTTPException(422, f"unknown label {lab!r} (not in the {svc.nom.name} nomenclature)")
        data = await _read_limited(file, limits.max_upload_bytes)
        spec = svc.archive.spec(svc.encoder.modality)
        parsed = parse_upload(file.filename or "", data, spec, limits.max_upload_bytes)
        vec = svc.encode(parsed.image)
        with svc.lock.write():
            if item_id in svc.table.pos:
                raise HTTPException(409, f"id {item_id!r} is already in the archive")
            svc.index.add([item_id], vec[None])
            svc.table.append(item_id, svc.nom.encode(labs), {"lon": lon, "lat": lat, "date": date,
                                                              "split": split, "_bands": parsed.bands})
            return svc.item_json(svc.table.pos[item_id])

    @app.get("/", include_in_schema=False)
    def index_page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


@dataclass
class CollectionSpec:
    """One archive + index (+ model) served under a name."""

    name: str
    archive: Path
    index: Path
    model: Path | None = None

    @classmethod
    def parse(cls, text: str) -> CollectionSpec:
        """``NAME=ARCHIVE,INDEX[,MODEL]`` as given to ``rsir serve --also``."""
        name, sep, rest = text.partition("=")
        parts = [x for x in rest.split(",") if x]
        if not sep or not re.fullmatch(r"[A-Za-z0-9_-]+", name) or len(parts) not in (2, 3):
            raise RsirError(f"collection {text!r}: expected NAME=ARCHIVE,INDEX[,MODEL] with NAME of letters, "
                            "digits, '-' or '_'")
        return cls(name, Path(parts[0]), Path(parts[1]), Path(parts[2]) if len(parts) == 3 else None)


def create_multi_app(specs: list[CollectionSpec], token: str | None = None,
                     limits: ServiceLimits | None = None) -> FastAPI:
    """Serve several collections: the first at ``/``, each other at ``/c/<name>/``, with a switcher on the page."""
    if not specs:
        raise RsirError("no collection to serve")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise RsirError(f"collection names must differ: {names}")
    prefixes = [""] + [f"/c/{s.name}" for s in specs[1:]]
    listing: list[dict[str, Any]] = []
    for s, pre in zip(specs, prefixes, strict=True):
        listing.append({"name": s.name, "url": pre + "/"})
    apps = [create_app(s.archive, s.index, model=s.model, token=token, limits=limits, prefix=pre,
                       collections=listing) for s, pre in zip(specs, prefixes, strict=True)]
    for c, a in zip(listing, apps, strict=True):
        c["items"] = len(a.state.service.table)
    root = apps[0]
    for pre, a in zip(prefixes[1:], apps[1:], strict=True):
        root.mount(pre, a)
    return root


def serve(archive: str | Path, index: str | Path, host: str = "127.0.0.1", port: int = 8000,
          model: str | Path | None = None, token: str | None = None,
          also: list[CollectionSpec] | None = None) -> None:
    """Run the service with uvicorn (blocking) and print the address to open."""
    import uvicorn

    first = CollectionSpec(Path(archive).name or "archive", Path(archive), Path(index),
                           Path(model) if model else None)
    app = create_multi_app([first, *(also or [])], token=token)
    print(f"rsir serve: http://{host}:{port}/  (API docs: http://{host}:{port}/docs)", flush=True)
    for s in also or []:
        print(f"            http://{host}:{port}/c/{s.name}/  ({s.archive})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
