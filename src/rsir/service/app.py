"""The search service: a thin HTTP layer over the query engine (rsir.query.SearchEngine), and the web page.

Every search, filter, page and result shape comes from the engine, so the service answers exactly what
``rsir search`` and the Python API answer for the same query. The service adds what belongs to HTTP: request
models and their bounds (:class:`ServiceLimits`), upload size checks, the bearer token for writes, quicklook
PNGs (cached) and the static page. FastAPI runs the synchronous endpoints in a thread pool; the engine's
readers-writer lock keeps searches consistent while an item is added.
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field

from rsir.data.bands import png_bytes, quicklook
from rsir.data.uploads import UploadError, describe_spec
from rsir.errors import NotFoundError, RsirError
from rsir.query import Filters, QueryError, QueryLimits, SearchEngine
from rsir.query.items import ConflictError

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


# -- request bodies ---------------------------------------------------------------------------------------------
class FilterBody(BaseModel):
    """Result filters; all given conditions must hold."""

    labels: list[str] = Field(default_factory=list, description="class names")
    labels_mode: Literal["any", "all"] = "any"
    split: str | None = None
    country: str | None = None
    date_from: str | None = Field(default=None, description="ISO date, inclusive")
    date_to: str | None = Field(default=None, description="ISO date, inclusive")
    bbox: list[float] | None = Field(default=None, description="[min_lon, min_lat, max_lon, max_lat]")

    def to_filters(self) -> Filters:
        return Filters(**self.model_dump())


class IdQuery(BaseModel):
    id: str
    k: int = 20
    offset: int = 0
    filters: FilterBody = Field(default_factory=FilterBody)
    target_modality: str | None = None
    include_query: bool = False


class TextQuery(BaseModel):
    text: str
    k: int = 20
    offset: int = 0
    filters: FilterBody = Field(default_factory=FilterBody)


class Service:
    """State behind the app: the query engine, token, limits, quicklook cache and URL prefix."""

    def __init__(self, engine: SearchEngine, token: str | None, limits: ServiceLimits, prefix: str = "") -> None:
        self.engine = engine
        self.archive = engine.archive
        self.token = token
        self.limits = limits
        self.prefix = prefix  # URL path this app is mounted under ("" at the root)
        self._ql: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._ql_lock = threading.Lock()

    def default_modality(self, mods: list[str]) -> str:
        """Quicklook modality when none is asked for: the indexed one, else the first the item has."""
        if self.engine.modality in mods:
            return self.engine.modality
        return mods[0] if mods else self.archive.primary_modality

    def with_quicklook(self, rec: dict[str, Any], modality: str | None = None) -> dict[str, Any]:
        """An engine record (item or hit) with the URL of its quicklook added."""
        mods = rec.get("modalities") or []
        qmod = modality if modality in mods else self.default_modality(mods)
        rec["quicklook"] = f"{self.prefix}/api/items/{rec['id']}/quicklook.png?modality={qmod}"
        return rec

    def item_json(self, p: int, modality: str | None = None) -> dict[str, Any]:
        return self.with_quicklook(self.engine.item_record(p), modality)

    def answer(self, results: Any, modality: str | None = None) -> dict[str, Any]:
        """The engine's results as JSON, each hit with its quicklook URL."""
        out = results.to_json()
        out["results"] = [self.with_quicklook(r, modality) for r in out["results"]]
        return out

    def quicklook_png(self, item_id: str, modality: str | None) -> bytes:
        table = self.engine.table
        p = self.engine.position(item_id)
        if p >= table.n_archive:
            bands = table.added[item_id]["_bands"]
            key = (item_id, "upload")
        else:
            mods = table.modalities[p]
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


def create_app(archive_path: str | Path | None = None, index_path: str | Path | None = None,
               model: str | Path | None = None, token: str | None = None,
               limits: ServiceLimits | None = None, engine: SearchEngine | None = None, prefix: str = "",
               collections: list[dict[str, Any]] | None = None) -> FastAPI:
    """The FastAPI app serving search over an archive and its index (or over a ready ``engine``).

    ``prefix`` is the URL path the app is mounted under (see :func:`create_multi_app`) and ``collections`` the list
    of all collections served beside it, for the page's collection switcher.
    """
    limits = limits or ServiceLimits()
    qlimits = QueryLimits(max_k=limits.max_k, max_offset=limits.max_offset)
    if engine is None:
        if archive_path is None or index_path is None:
            raise RsirError("create_app needs archive_path and index_path (or an engine)")
        engine = SearchEngine.open(index_path, archive=archive_path, model=model, limits=qlimits)
    else:
        engine.limits = qlimits
    svc = Service(engine, token, limits, prefix)
    eng = engine
    # FastAPIOffline: the same FastAPI, with /docs and /redoc served from assets shipped in the package (no CDN)
    app = FastAPIOffline(title="rsir search", version="1", description="Search an Earth-observation archive by example "
                  "image, by upload and by text. Hash codes are compared by Hamming distance.")
    app.state.service = svc

    @app.exception_handler(RsirError)
    async def _rsir_error(request: Request, exc: RsirError) -> JSONResponse:
        if isinstance(exc, UploadError):
            status = exc.status
        elif isinstance(exc, NotFoundError):
            status = 404
        elif isinstance(exc, ConflictError):
            status = 409
        else:
            status = 422
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
        return {"metric": eng.metric, "dim": eng.index.dim, "size": len(eng.index), "modality": eng.modality,
                "expects": describe_spec(eng.spec), "kind": eng.index_dir.kind, "method": eng.index_dir.method}

    @app.get("/api/collections")
    def list_collections() -> list[dict[str, Any]]:
        """The collections (archive + index) this server answers for, each with the URL of its page."""
        return [{**c, "current": c["url"] == (prefix or "") + "/"} for c in collections or
                [{"name": svc.archive.path.name, "url": (prefix or "") + "/"}]]

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        """Liveness and sizes."""
        return {"status": "ok", "items": len(eng.table), "index": index_info()}

    @app.get("/api/stats")
    def stats() -> dict[str, Any]:
        """What the archive and index hold, for the page's filters and header."""
        with eng.lock.read():
            t = eng.table
            counts = t.labels.sum(0)
            dates = sorted(d for d in set(t.date.tolist()) if d)
            finite = np.isfinite(t.lon) & np.isfinite(t.lat)
            extent = ([float(t.lon[finite].min()), float(t.lat[finite].min()), float(t.lon[finite].max()),
                       float(t.lat[finite].max())] if finite.any() else None)
            return {
                "items": len(t), "added": len(t.added),
                "splits": {s or "(none)": int((t.split == s).sum()) for s in sorted(set(t.split.tolist()))},
                "countries": sorted(c for c in set(t.country.tolist()) if c),
                "labels": [{"name": c, "count": int(n)} for c, n in zip(eng.nomenclature.classes, counts, strict=True)],
                "nomenclature": eng.nomenclature.name, "modalities": list(svc.archive.modalities),
                "target_modalities": [eng.modality], "index": index_info(),
                "date_range": [dates[0], dates[-1]] if dates else None, "extent": extent,
                "text_mode": "label-match", "limits": limits.__dict__, "adding_items": svc.token is not None,
                "added_items_persist": False,
            }

    @app.get("/api/items")
    def items(offset: int = Query(0, ge=0), limit: int = Query(24, ge=1), split: str | None = None,
              labels: list[str] | None = Query(None), labels_mode: Literal["any", "all"] = "any",
              modality: str | None = None) -> dict[str, Any]:
        """Browse the archive (with optional split / label filters)."""
        if limit > limits.max_browse:
            raise HTTPException(422, f"limit must be at most {limits.max_browse}")
        labs = [x for v in labels or [] for x in v.split("|") if x]
        with eng.lock.read():
            mask = eng.filter_mask(Filters(labels=labs, labels_mode=labels_mode, split=split or None))
            pos = np.flatnonzero(mask) if mask is not None else np.arange(len(eng.table))
            page = pos[offset:offset + limit]
            return {"total": int(len(pos)), "offset": offset, "limit": limit,
                    "items": [svc.item_json(int(p), modality) for p in page]}

    @app.get("/api/random")
    def random_item(split: str | None = None) -> dict[str, Any]:
        """One item drawn at random (optionally from one split)."""
        with eng.lock.read():
            mask = eng.filter_mask(Filters(split=split or None))
            pos = np.flatnonzero(mask) if mask is not None else np.arange(len(eng.table))
            if not len(pos):
                raise HTTPException(404, f"no items in split {split!r}")
            return svc.item_json(int(pos[secrets.randbelow(len(pos))]))

    @app.get("/api/items/{item_id}")
    def item(item_id: str) -> dict[str, Any]:
        """Metadata of one item."""
        with eng.lock.read():
            p = eng.position(item_id)
            return {**svc.item_json(p), "captions": eng.captions(p)}

    @app.get("/api/items/{item_id}/quicklook.png")
    def item_quicklook(item_id: str, modality: str | None = None) -> Response:
        """PNG quicklook (S2 true colour, S1 VV/VH/ratio false colour)."""
        if modality is not None and modality not in svc.archive.modalities:
            raise HTTPException(422, f"modality {modality!r} is not in this archive "
                                     f"(it has {', '.join(svc.archive.modalities)})")
        return Response(svc.quicklook_png(item_id, modality), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    def check_target(target: str | None) -> None:
        if target and target != eng.modality:
            raise HTTPException(422, f"target modality {target!r} is not indexed: this index holds "
                                     f"{eng.modality} codes")

    @app.post("/api/search/id")
    def search_id(q: IdQuery) -> dict[str, Any]:
        """Search by an archive item: its stored code is the query."""
        check_target(q.target_modality)
        res = eng.search_id(q.id, q.k, q.offset, q.filters.to_filters(), q.include_query)
        out = svc.answer(res, q.target_modality)
        out["query"] = svc.with_quicklook(out["query"])
        return out

    @app.post("/api/search/upload")
    async def search_upload(file: UploadFile = File(...), k: int = Form(20), offset: int = Form(0),
                            filters: str = Form("{}")) -> dict[str, Any]:
        """Search by an uploaded image: GeoTIFF, .npz of band arrays, or PNG/JPEG for RGB models."""
        eng.check_page(k, offset)
        try:
            flt = FilterBody.model_validate_json(filters or "{}").to_filters()
        except ValueError as e:
            raise HTTPException(422, f"filters: {e}") from None
        data = await _read_limited(file, limits.max_upload_bytes)
        res, parsed = eng.search_upload(file.filename or "", data, k, offset, flt, limits.max_upload_bytes)
        out = svc.answer(res)
        ql = base64.b64encode(png_bytes(quicklook(parsed.bands))).decode()
        out["query"]["quicklook"] = f"data:image/png;base64,{ql}"
        return out

    @app.post("/api/search/text")
    def search_text(q: TextQuery) -> dict[str, Any]:
        """Search by a sentence; without a text-image model, by matching it against the label names."""
        if len(q.text) > limits.max_text_chars:
            raise HTTPException(422, f"text is longer than {limits.max_text_chars} characters")
        res, match = eng.search_text(q.text, q.k, q.offset, q.filters.to_filters())
        out = svc.answer(res)
        out["note"] = None if match.concepts else "no class name or synonym found in the text"
        return out

    @app.post("/api/items", status_code=201)
    async def add_item(file: UploadFile = File(...), id: str = Form(...), labels: str = Form(""),
                       lon: str = Form(""), lat: str = Form(""), date: str = Form(""), split: str = Form(""),
                       authorization: str | None = Header(None)) -> dict[str, Any]:
        """Add an uploaded patch to the index (needs the bearer token). Added items live in this server's
        memory only: they are gone after a restart."""
        svc.check_auth(authorization)
        item_id = id.strip()
        if not item_id or len(item_id) > 200 or "/" in item_id:
            raise HTTPException(422, "id must be 1-200 characters without '/'")
        labs = [x.strip() for x in labels.split("|") if x.strip()]
        for lab in labs:
            if lab not in eng.nomenclature.classes:
                raise QueryError(f"unknown label {lab!r} (not in the {eng.nomenclature.name} nomenclature)")
        data = await _read_limited(file, limits.max_upload_bytes)
        parsed = eng.parse(file.filename or "", data, limits.max_upload_bytes)
        p = eng.add_item(item_id, parsed, labs, {"lon": lon, "lat": lat, "date": date, "split": split})
        with eng.lock.read():
            return svc.item_json(p)

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
        c["items"] = len(a.state.service.engine.table)
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
