"""The search service: a thin HTTP layer over the query engine (rsir.query.SearchEngine), and the web page.

Every search, filter, page and result shape comes from the engine, so the service answers exactly what
``rsir search`` and the Python API answer for the same query. The service adds what belongs to HTTP: request
models and their bounds (:class:`ServiceLimits`), body size limits enforced while the body streams and the
bearer token for writes checked before the body is read (:mod:`rsir.service.guard`), quicklook PNGs (cached)
and the static page. FastAPI runs the synchronous endpoints in a thread pool; uploads are parsed and encoded in a
bounded worker pool, off the event loop; the engine's readers-writer lock keeps searches consistent while an
item is added. SECURITY.md says what this defends against and what it assumes.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from rsir.data.bands import png_bytes, quicklook
from rsir.data.uploads import UploadError, describe_spec
from rsir.errors import NotFoundError, RsirError
from rsir.feedback import AnnotationConflict, UnknownPair
from rsir.query import Filters, QueryError, QueryLimits, SearchEngine
from rsir.query.geojson import GEOJSON_MEDIA_TYPE, item_collection
from rsir.query.items import ConflictError
from rsir.service.guard import GuardRules, RequestGuard, WorkerPool, auth_problem, token_setting

STATIC = Path(__file__).parent / "static"
API_DESCRIPTION = (
    "Search an Earth-observation archive by example image, by upload and by text. Hash codes are compared by "
    "Hamming distance.\n\n"
    "Adding items (POST /api/items) and deleting them (DELETE /api/items/{id}) need 'Authorization: Bearer "
    "<token>' and are off when the server has no token. A server started with a token writes each add and delete "
    "to the index's journal (fsynced) before answering, so acknowledged writes survive a restart or a crash "
    "(GET /api/stats reports \"added_items_persist\").\n\n"
    "Limits (GET /api/stats lists them): request bodies are refused with 413 while they stream in when larger "
    "than the endpoint allows; every list in a request is bounded; a bad number is a 422; when the upload "
    "workers are all busy an upload gets 503 with Retry-After. See SECURITY.md.")


@dataclass(frozen=True)
class ServiceLimits:
    """Bounds on what one request may ask for (SECURITY.md lists them with their defaults)."""

    max_upload_bytes: int = 20 * 1024 * 1024  # the uploaded file; the whole multipart body may be 64 KiB more
    max_json_bytes: int = 1024 * 1024  # the body of every other route (JSON searches)
    max_k: int = 500
    max_offset: int = 10_000
    max_browse: int = 200
    max_text_chars: int = 512
    quicklook_cache: int = 2048
    codemap_points: int = 1000  # codes in the page's t-SNE map (fitted once, on first use)
    montage_cols: int = 6
    montage_tiles: int = 60  # results drawn in a montage (k may be larger)
    upload_workers: int = 2  # threads that parse and encode uploads, off the event loop
    upload_queue: int = 8  # uploads accepted at once (running or waiting for a worker); more get 503
    max_connections: int = 64  # concurrent connections uvicorn accepts (rsir serve); more get 503

    @property
    def max_upload_body(self) -> int:
        return self.max_upload_bytes + MULTIPART_SLACK


#: room for the multipart framing and form fields around an uploaded file
MULTIPART_SLACK = 64 * 1024
#: most entries in any list of a request (labels); a nomenclature has far fewer classes
MAX_LIST = 256
#: most characters in a name, id, date or split in a request
MAX_NAME = 200
Name = Annotated[str, StringConstraints(max_length=MAX_NAME)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


# -- request bodies ---------------------------------------------------------------------------------------------
class FilterBody(BaseModel):
    """Result filters; all given conditions must hold."""

    model_config = ConfigDict(extra="forbid")

    labels: list[Name] = Field(default_factory=list, max_length=MAX_LIST,
                               description=f"class names (at most {MAX_LIST}; repeats are ignored)")
    labels_mode: Literal["any", "all"] = "any"
    split: Name | None = None
    country: Name | None = None
    date_from: Name | None = Field(default=None, description="ISO date, inclusive")
    date_to: Name | None = Field(default=None, description="ISO date, inclusive")
    bbox: list[FiniteFloat] | None = Field(default=None, min_length=4, max_length=4,
                                           description="[min_lon, min_lat, max_lon, max_lat] (min_lon > max_lon "
                                                       "crosses the antimeridian)")
    near: list[FiniteFloat] | None = Field(default=None, min_length=3, max_length=3,
                                           description="[lon, lat, radius_km]: item centres within radius_km")
    season: Literal["winter", "spring", "summer", "autumn"] | None = Field(
        default=None, description="meteorological season of the acquisition (months shift by six south of "
                                  "the equator)")
    months: list[Annotated[int, Field(ge=1, le=12)]] | None = Field(default=None, max_length=12,
                                                                    description="acquisition months 1-12")

    @field_validator("labels")
    @classmethod
    def _dedup(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    def to_filters(self) -> Filters:
        return Filters(**self.model_dump())


class IdQuery(BaseModel):
    id: Name
    k: int = 20
    offset: int = 0
    filters: FilterBody = Field(default_factory=FilterBody)
    target_modality: Name | None = None
    from_modality: Name | None = Field(default=None, description="cross-modal index: the query's modality "
                                       "(default: the index's own); target_modality: the results'")
    include_query: bool = False
    radius: int | None = None  # every item within this Hamming distance, paged by k / offset
    montage: bool = Field(default=False, description="add a PNG montage of the query and its results (data URL)")
    codemap: bool = Field(default=False, description="add the query's place on the code map (query.codemap)")


class TextQuery(BaseModel):
    text: Annotated[str, StringConstraints(max_length=10_000)]
    mode: Literal["hybrid", "learned", "matcher"] = Field(
        default="hybrid", description="who answers: hybrid (the label matcher when it finds a class name or synonym, "
        "else the learned codes of the index's text-image model), learned or matcher; without a text-image model "
        "the matcher answers (learned: 422)")
    k: int = 20
    offset: int = 0
    filters: FilterBody = Field(default_factory=FilterBody)
    montage: bool = Field(default=False, description="add a PNG montage of the query and its results (data URL)")


class Service:
    """State behind the app: the query engine, token, limits, quicklook cache and URL prefix."""

    def __init__(self, engine: SearchEngine, token: str | None, limits: ServiceLimits, prefix: str = "") -> None:
        self.engine = engine
        self.archive = engine.archive
        self.token = token_setting(token)  # None: writes off
        self.limits = limits
        self.pool = WorkerPool(limits.upload_workers, limits.upload_queue)
        self.prefix = prefix  # URL path this app is mounted under ("" at the root)
        self._ql: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._ql_lock = threading.Lock()
        self._codemap: Any = None
        self._codemap_lock = threading.Lock()

    def codemap(self) -> Any:
        """The t-SNE map of (a seeded sample of) the archive's codes, fitted on first use (rsir.query.codemap)."""
        from rsir.query.codemap import fit_codemap

        with self._codemap_lock:
            if self._codemap is None:
                eng = self.engine
                n = eng.table.n_archive
                rng = np.random.default_rng(0)
                pos = np.sort(rng.choice(n, size=min(n, self.limits.codemap_points), replace=False))
                vecs = eng.vectors([eng.table.ids[int(p)] for p in pos])
                self._codemap = fit_codemap(vecs, eng.metric, eng.table.labels[:n], positions=pos)
            return self._codemap

    def place(self, vec: np.ndarray, p: int | None = None) -> list[float] | None:
        """The query's coordinates on the code map (its own point when it is on the map); None before the map
        exists."""
        cm = self._codemap
        if cm is None:
            return None
        if p is not None:
            hit = np.flatnonzero(cm.positions == p)
            if len(hit):
                return [float(v) for v in cm.xy[hit[0]]]
        return [float(v) for v in cm.place(np.asarray(vec)[None])[0]]

    def montage_url(self, results: Any, query_rgb: np.ndarray | None = None) -> str:
        """The results' montage as a PNG data URL (rsir.query.montage)."""
        from rsir.query.montage import results_montage

        png = results_montage(self.engine, results, query_rgb, cols=self.limits.montage_cols,
                              max_tiles=self.limits.montage_tiles)
        return "data:image/png;base64," + base64.b64encode(png).decode()

    def default_modality(self, mods: list[str]) -> str:
        """Quicklook modality when none is asked for: the indexed one, else the first the item has."""
        if self.engine.modality in mods:
            return self.engine.modality
        return mods[0] if mods else self.archive.primary_modality

    def with_quicklook(self, rec: dict[str, Any], modality: str | None = None) -> dict[str, Any]:
        """An engine record (item or hit) with the URL of its quicklook added."""
        mods = rec.get("modalities") or []
        qmod = modality if modality in mods else self.default_modality(mods)
        rec["quicklook"] = (f"{self.prefix}/api/items/{quote(str(rec['id']), safe='')}/quicklook.png"
                            f"?modality={quote(str(qmod), safe='')}")
        return rec

    def item_json(self, p: int, modality: str | None = None) -> dict[str, Any]:
        return self.with_quicklook(self.engine.item_record(p), modality)

    def answer(self, results: Any, modality: str | None = None) -> dict[str, Any]:
        """The engine's results as JSON, each hit with its quicklook URL."""
        out = results.to_json()
        out["results"] = [self.with_quicklook(r, modality) for r in out["results"]]
        return out

    def wants_geojson(self, request: Request) -> bool:
        """Whether the client asked for a STAC ItemCollection (``Accept: application/geo+json``)."""
        return GEOJSON_MEDIA_TYPE in request.headers.get("accept", "")

    def geojson(self, request: Request, results: Any) -> JSONResponse:
        """The results as a STAC ItemCollection, thumbnails as absolute URLs."""
        base = str(request.base_url).rstrip("/")
        ic = item_collection(results, self.engine,
                             thumbnail=lambda rec: base + self.with_quicklook(dict(rec))["quicklook"])
        return JSONResponse(ic, media_type=GEOJSON_MEDIA_TYPE)

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

    def forget_quicklook(self, item_id: str) -> None:
        """Drop cached quicklooks of an item (deleted, or its id re-used)."""
        with self._ql_lock:
            for key in [k for k in self._ql if k[0] == item_id]:
                del self._ql[key]

    def check_auth(self, request: Request) -> None:
        """The token check again at the endpoint (RequestGuard has made it before the body was read)."""
        problem = auth_problem([v for k, v in request.scope["headers"] if k == b"authorization"], self.token)
        if problem is not None:
            raise HTTPException(problem[0], problem[1],
                                headers={"WWW-Authenticate": "Bearer"} if problem[0] == 401 else None)


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


def _coordinate(name: str, text: str, bound: float) -> float | None:
    """A longitude / latitude form field: empty for unknown, else a finite number within +-bound (422)."""
    if not text.strip():
        return None
    try:
        v = float(text)
    except ValueError:
        raise HTTPException(422, f"{name} must be a number, got {text[:40]!r}") from None
    if not math.isfinite(v) or abs(v) > bound:
        raise HTTPException(422, f"{name} must be between -{bound:g} and {bound:g}, got {text[:40]!r}")
    return v


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each field and problem, without echoing the input (which may be NaN or huge)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse({"detail": [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")),
                                     "type": str(e.get("type", ""))} for e in errors]}, status_code=422)


def create_app(archive_path: str | Path | None = None, index_path: str | Path | None = None,
               model: str | Path | None = None, token: str | None = None,
               limits: ServiceLimits | None = None, engine: SearchEngine | None = None, prefix: str = "",
               collections: list[dict[str, Any]] | None = None, change_index: str | Path | None = None,
               annotate: bool = False, annotation_db: str | Path | None = None) -> FastAPI:
    """The FastAPI app serving search over an archive and its index (or over a ready ``engine``).

    ``annotate``: the annotation mode and relevance feedback (:mod:`rsir.service.annotate`; the index must hold
    float features), answers in ``annotation_db`` (default: beside the index).

    ``prefix`` is the URL path the app is mounted under (see :func:`create_multi_app`) and ``collections`` the list
    of all collections served beside it, for the page's collection switcher.
    """
    limits = limits or ServiceLimits()
    qlimits = QueryLimits(max_k=limits.max_k, max_offset=limits.max_offset)
    if engine is None:
        if archive_path is None or index_path is None:
            raise RsirError("create_app needs archive_path and index_path (or an engine)")
        # with a token the server is the index's journal writer: adds and deletes are durable
        engine = SearchEngine.open(index_path, archive=archive_path, model=model, limits=qlimits,
                                   durable=token_setting(token) is not None)
    else:
        engine.limits = qlimits
    svc = Service(engine, token, limits, prefix)
    eng = engine
    # FastAPIOffline: the same FastAPI, with /docs and /redoc served from assets shipped in the package (no CDN)
    app = FastAPIOffline(title="rsir search", version="1", description=API_DESCRIPTION)
    app.state.service = svc
    rules = GuardRules(default_limit=limits.max_json_bytes, token=svc.token,
                       limits={("POST", "/api/search/upload"): limits.max_upload_body,
                               ("POST", "/api/items"): limits.max_upload_body},
                       writes={("POST", "/api/items")})
    app.state.guard_rules = rules
    app.add_middleware(RequestGuard, rules=rules)
    app.add_exception_handler(RequestValidationError, _validation_error)
    if change_index is not None:  # text <-> bitemporal pair search beside the collection's own index
        from rsir.query.change import ChangeEngine
        from rsir.service.change import add_change_routes

        add_change_routes(app, ChangeEngine.open(change_index, archive=engine.archive, limits=qlimits), prefix,
                          limits.max_text_chars, page_limit=limits.max_browse)
    from rsir.service.annotate import add_feedback_search

    add_feedback_search(app, svc)
    if annotate:
        from rsir.feedback.session import AnnotationSession
        from rsir.service.annotate import add_annotation_routes

        add_annotation_routes(app, svc, AnnotationSession(engine.index_dir, engine.archive, db=annotation_db), rules)

    @app.exception_handler(RsirError)
    async def _rsir_error(request: Request, exc: RsirError) -> JSONResponse:
        if isinstance(exc, UploadError):
            status = exc.status
        elif isinstance(exc, NotFoundError | UnknownPair):
            status = 404
        elif isinstance(exc, ConflictError | AnnotationConflict):
            status = 409
        else:
            status = 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    def index_info() -> dict[str, Any]:
        return {"metric": eng.metric, "dim": eng.index.dim, "size": len(eng.index), "modality": eng.modality,
                "modalities": eng.modalities, "cross_modal": eng.cross,
                "expects": " or ".join(describe_spec(svc.archive.spec(m)) for m in eng.modalities),
                "kind": eng.index_dir.kind, "method": eng.index_dir.method}

    @app.get("/api/collections")
    def list_collections() -> list[dict[str, Any]]:
        """The collections (archive + index) this server answers for, each with the URL of its page."""
        return [{**c, "current": c["url"] == (prefix or "") + "/"} for c in collections or
                [{"name": svc.archive.path.name, "url": (prefix or "") + "/"}]]

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        """Liveness and sizes (answered on the event loop itself: no thread, no lock)."""
        return {"status": "ok", "items": len(eng.table), "index": index_info()}

    @app.get("/api/stats")
    def stats() -> dict[str, Any]:
        """What the archive and index hold, for the page's filters and header."""
        with eng.lock.read():
            t = eng.table
            counts = t.labels.sum(0)
            dates = sorted(d for d in t.date.counts() if d)
            finite = np.isfinite(t.lon) & np.isfinite(t.lat)
            extent = ([float(t.lon[finite].min()), float(t.lat[finite].min()), float(t.lon[finite].max()),
                       float(t.lat[finite].max())] if finite.any() else None)
            return {
                "items": int(t.alive.sum()), "added": len(t.added),
                "splits": {s or "(none)": n for s, n in sorted(t.split.counts().items())},
                "countries": sorted(c for c in t.country.counts() if c),
                "labels": [{"name": c, "count": int(n)} for c, n in zip(eng.nomenclature.classes, counts, strict=True)],
                "nomenclature": eng.nomenclature.name, "modalities": list(svc.archive.modalities),
                "target_modalities": eng.modalities, "from_modalities": eng.modalities, "index": index_info(),
                "date_range": [dates[0], dates[-1]] if dates else None, "extent": extent,
                "text_mode": eng.text_model or "label-match", "limits": {**limits.__dict__, "max_radius_hits": eng.limits.max_radius_hits},
                "adding_items": svc.token is not None, "added_items_persist": eng.journal is not None,
                "change": change_index is not None,
            }

    @app.get("/api/codemap")
    def codemap() -> dict[str, Any]:
        """A 2-D t-SNE map (openTSNE) of a seeded sample of the indexed codes, each point coloured by its item's
        rarest label; fitted once, on the first request (seconds to a minute), then cached. Searches with
        "codemap": true place their query on it."""
        cm = svc.codemap()
        return cm.to_json(eng.table.ids, eng.nomenclature.classes)

    @app.get("/api/items")
    def items(offset: int = Query(0, ge=0), limit: int = Query(24, ge=1), split: str | None = None,
              labels: list[str] | None = Query(None), labels_mode: Literal["any", "all"] = "any",
              modality: str | None = None) -> dict[str, Any]:
        """Browse the archive (with optional split / label filters)."""
        if limit > limits.max_browse:
            raise HTTPException(422, f"limit must be at most {limits.max_browse}")
        if offset > limits.max_offset:
            raise HTTPException(422, f"offset must be at most {limits.max_offset}")
        labs = list(dict.fromkeys(x for v in labels or [] for x in v.split("|") if x))
        if len(labs) > MAX_LIST:
            raise HTTPException(422, f"at most {MAX_LIST} labels, got {len(labs)}")
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

    # ids are percent-encoded in URLs (any character, '/' included): the quicklook and captions routes come
    # before /api/items/{item_id:path}, which would shadow them
    @app.get("/api/items/{item_id:path}/captions")
    def item_captions(item_id: str, k: int = Query(5, ge=1, le=50)) -> dict[str, Any]:
        """An item's own captions and the archive captions nearest to its image code (text-image model)."""
        with eng.lock.read():
            p = eng.position(item_id)
            own = eng.captions(p)
        if eng.text_model is None:
            return {"id": item_id, "captions": own, "nearest": [], "answered_by": None,
                    "note": "this index has no text-image model, so captions cannot be ranked"}
        return {"id": item_id, "captions": own, "nearest": eng.nearest_captions(item_id, k),
                "answered_by": eng.text_model, "note": None}

    @app.get("/api/items/{item_id:path}/quicklook.png")
    def item_quicklook(item_id: str, modality: str | None = None) -> Response:
        """PNG quicklook (S2 true colour, S1 VV/VH/ratio false colour)."""
        if modality is not None and modality not in svc.archive.modalities:
            raise HTTPException(422, f"modality {modality[:40]!r} is not in this archive "
                                     f"(it has {', '.join(svc.archive.modalities)})")
        return Response(svc.quicklook_png(item_id, modality), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/items/{item_id:path}")
    def item(item_id: str) -> dict[str, Any]:
        """Metadata of one item."""
        with eng.lock.read():
            p = eng.position(item_id)
            return {**svc.item_json(p), "captions": eng.captions(p)}

    def check_modality(m: str | None, role: str) -> str | None:
        if m and m.lower() not in eng.modalities:
            raise HTTPException(422, f"{role} modality {m[:40]!r} is not indexed: this index holds "
                                     f"{', '.join(eng.modalities)} codes")
        return m.lower() if m else None

    geo_note = (" Send 'Accept: application/geo+json' for a STAC ItemCollection (GeoJSON FeatureCollection with "
                "rsir:distance and rsir:labels as properties).")

    @app.post("/api/search/id", description="Search by an archive item: its stored code is the query. A "
              "cross-modal index answers any direction (from_modality -> target_modality, e.g. s1 -> s2); the "
              "answer's direction says which. radius: every item within that Hamming distance." + geo_note)
    def search_id(q: IdQuery, request: Request) -> Any:
        target = check_modality(q.target_modality, "target")
        src = check_modality(q.from_modality, "from")
        res = eng.search_id(q.id, q.k, q.offset, q.filters.to_filters(), q.include_query, from_=src,
                            target=target, radius=q.radius)
        if svc.wants_geojson(request):
            return svc.geojson(request, res)
        f, t = eng.directions(src, target)
        out = svc.answer(res, t if eng.cross else q.target_modality)
        out["query"] = svc.with_quicklook(out["query"], f if eng.cross else None)
        if q.montage:
            out["montage"] = svc.montage_url(res)
        if q.codemap and not eng.cross:
            p = eng.position(q.id)
            out["query"]["codemap"] = svc.place(eng.vectors([q.id])[0], p if p < eng.table.n_archive else None)
        return out

    @app.post("/api/search/upload", description="Search by an uploaded image: GeoTIFF, .npz of band arrays, or "
              "PNG/JPEG for RGB models (recognised by content). A cross-modal index takes a patch of any of its "
              "modalities (e.g. a Sentinel-1 GeoTIFF with VV, VH in dB; without from_modality the file's bands say "
              "which) and answers in target_modality. Parsing and encoding run in a bounded worker pool (503 when "
              "it is full)." + geo_note)
    async def search_upload(request: Request, file: UploadFile = File(...), k: int = Form(20),
                            offset: int = Form(0), filters: str = Form("{}"), from_modality: str = Form(""),
                            target_modality: str = Form(""), montage: bool = Form(False),
                            codemap: bool = Form(False), radius: str = Form("")) -> Any:
        eng.check_page(k, offset)
        try:
            rad = int(radius) if radius.strip() else None
        except ValueError:
            raise HTTPException(422, f"radius must be a whole number of bits, got {radius[:20]!r}") from None
        src = check_modality(from_modality[:MAX_NAME] or None, "from")
        target = check_modality(target_modality[:MAX_NAME] or None, "target")
        try:
            flt = FilterBody.model_validate_json(filters or "{}").to_filters()
        except ValueError as e:
            raise HTTPException(422, f"filters: {e}") from None
        data = await _read_limited(file, limits.max_upload_bytes)
        name = file.filename or ""

        geo = svc.wants_geojson(request)

        def work() -> Any:
            res, parsed = eng.search_upload(name, data, k, offset, flt, limits.max_upload_bytes, from_=src,
                                            target=target, radius=rad)
            if geo:
                return svc.geojson(request, res)
            out = svc.answer(res, res.direction.split("->")[-1] if res.direction else None)
            qrgb = quicklook(parsed.bands)
            out["query"]["quicklook"] = "data:image/png;base64," + base64.b64encode(png_bytes(qrgb)).decode()
            if montage:
                out["montage"] = svc.montage_url(res, qrgb)
            if codemap and not eng.cross:
                out["query"]["codemap"] = svc.place(eng.encode_raw(parsed.image))
            return out

        return await svc.pool.run(work)

    @app.post("/api/search/text", description="Search by a sentence: the text-image model's codes when the index "
              "has one and the label matcher finds no class name or synonym in it (mode hybrid, the default), else by "
              "matching it against the label names; query.answered_by / query.answered say which part answered, "
              "query.why why." + geo_note)
    def search_text(q: TextQuery, request: Request) -> Any:
        if len(q.text) > limits.max_text_chars:
            raise HTTPException(422, f"text is longer than {limits.max_text_chars} characters")
        if not q.text.strip():
            raise HTTPException(422, "text is empty")
        res, match = eng.search_text(q.text, q.k, q.offset, q.filters.to_filters(), limits.max_text_chars,
                                     mode=q.mode)
        if svc.wants_geojson(request):
            return svc.geojson(request, res)
        out = svc.answer(res)
        if eng.text_model is not None:
            out["note"] = None
        else:
            out["note"] = "this index has no text-image model: the sentence was matched against the label names" + (
                "" if match.concepts else "; no class name or synonym found in the text")
        if q.montage:
            out["montage"] = svc.montage_url(res)
        return out

    @app.post("/api/items", status_code=201)
    async def add_item(request: Request, file: UploadFile = File(...), id: str = Form(...),
                       labels: str = Form(""), lon: str = Form(""), lat: str = Form(""), date: str = Form(""),
                       split: str = Form("")) -> dict[str, Any]:
        """Add an uploaded patch to the index (needs 'Authorization: Bearer <token>', checked before the body
        is read). A server started with a token journals the add (fsynced) before answering 201."""
        svc.check_auth(request)
        item_id = id.strip()
        if not item_id or len(item_id) > MAX_NAME or "/" in item_id:
            raise HTTPException(422, f"id must be 1-{MAX_NAME} characters without '/'")
        labs = list(dict.fromkeys(x.strip() for x in labels.split("|") if x.strip()))
        if len(labs) > MAX_LIST:
            raise HTTPException(422, f"at most {MAX_LIST} labels, got {len(labs)}")
        for lab in labs:
            if lab not in eng.nomenclature.classes:
                raise QueryError(f"unknown label {lab[:MAX_NAME]!r} (not in the {eng.nomenclature.name} "
                                 "nomenclature)")
        x, y = _coordinate("lon", lon, 180), _coordinate("lat", lat, 90)
        if date.strip():
            try:
                dt.date.fromisoformat(date.strip()[:10])
            except ValueError:
                raise HTTPException(422, f"date must be an ISO date (YYYY-MM-DD), got {date[:40]!r}") from None
        if len(split) > MAX_NAME:
            raise HTTPException(422, f"split must be at most {MAX_NAME} characters")
        data = await _read_limited(file, limits.max_upload_bytes)
        name = file.filename or ""
        meta = {"lon": "" if x is None else x, "lat": "" if y is None else y, "date": date.strip(),
                "split": split.strip()}

        def work() -> dict[str, Any]:
            parsed = eng.parse(name, data, limits.max_upload_bytes)
            p = eng.add_item(item_id, parsed, labs, meta)
            with eng.lock.read():
                return svc.item_json(p)

        return await svc.pool.run(work)

    @app.delete("/api/items/{item_id:path}")
    def delete_item(request: Request, item_id: str) -> dict[str, Any]:
        """Delete an item (archive or added) from the index (needs 'Authorization: Bearer <token>'); journaled
        (fsynced) before the answer when the server was started with a token."""
        svc.check_auth(request)
        eng.delete_item(item_id)
        svc.forget_quicklook(item_id)
        return {"deleted": item_id, "persisted": eng.journal is not None}

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
                     limits: ServiceLimits | None = None, change: str | Path | None = None,
                     annotate: bool = False, annotation_db: str | Path | None = None) -> FastAPI:
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
                       collections=listing, change_index=change if pre == "" else None,
                       annotate=annotate and not pre, annotation_db=annotation_db if pre == "" else None)
            for s, pre in zip(specs, prefixes, strict=True)]
    for c, a in zip(listing, apps, strict=True):
        c["items"] = len(a.state.service.engine.table)
    root = apps[0]
    for pre, a in zip(prefixes[1:], apps[1:], strict=True):
        root.mount(pre, a)
        # requests under a mounted collection are limited and authorised by that collection's own guard
        root.state.guard_rules.delegated.append(pre)
    return root


def serve(archive: str | Path, index: str | Path, host: str = "127.0.0.1", port: int = 8000,
          model: str | Path | None = None, token: str | None = None,
          also: list[CollectionSpec] | None = None, change: str | Path | None = None,
          annotate: bool = False, annotation_db: str | Path | None = None) -> None:
    """Run the service with uvicorn (blocking) and print the address to open; ``annotate`` turns on the
    annotation mode for the first collection."""
    import uvicorn

    first = CollectionSpec(Path(archive).name or "archive", Path(archive), Path(index),
                           Path(model) if model else None)
    app = create_multi_app([first, *(also or [])], token=token, change=change, annotate=annotate,
                           annotation_db=annotation_db)
    print(f"rsir serve: http://{host}:{port}/  (API docs: http://{host}:{port}/docs)", flush=True)
    for s in also or []:
        print(f"            http://{host}:{port}/c/{s.name}/  ({s.archive})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning",
                limit_concurrency=ServiceLimits().max_connections)
