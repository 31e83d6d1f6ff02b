"""Results as a STAC ItemCollection: a GeoJSON FeatureCollection whose features are STAC 1.1 Items.

Each hit is a Feature with the item's footprint (the STAC source's geometry, else the bbox as a polygon, else the
centre point, else null), its bbox, its datetime (an unknown date is written as STAC allows: ``datetime: null``
with an interval and ``rsir:datetime_unknown``), and rsir's answer as ``rsir:``-prefixed properties: rank,
distance, metric, labels, shares_label, split, country. A thumbnail asset is added when the caller gives the
URL of each item's quicklook. The collection carries ``numberMatched`` / ``numberReturned`` (as STAC API item
searches do) and the query under ``rsir:query``. ``rsir search --format geojson`` prints it and the service
answers it to a client that sends ``Accept: application/geo+json``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rsir.data.stac_export import datetime_fields, item_geometry

if TYPE_CHECKING:
    from rsir.query.engine import Results, SearchEngine

GEOJSON_MEDIA_TYPE = "application/geo+json"
STAC_VERSION = "1.1.0"


def _record_geometry(engine: SearchEngine, rec: dict[str, Any], p: int | None) -> tuple[Any, Any]:
    row = {"geometry": engine.table.geometry[p] if p is not None else "", "bbox": rec.get("bbox"),
           "lon": rec.get("lon"), "lat": rec.get("lat")}
    return item_geometry(row)


def _created(engine: SearchEngine) -> dt.datetime:
    text = str(engine.archive.manifest.get("created") or "")
    try:
        d = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return d if d.tzinfo else d.replace(tzinfo=dt.UTC)
    except ValueError:
        return dt.datetime.now(dt.UTC)


def _full_date(engine: SearchEngine, p: int, rec: dict[str, Any]) -> str:
    """The catalog's acquisition datetime (the engine's table keeps the day only)."""
    if p < engine.table.n_archive:
        v = engine.archive.catalog["date"].iat[p]
        if isinstance(v, str) and v:
            return v
    return str(rec.get("date") or "")


def item_collection(results: Results, engine: SearchEngine,
                    thumbnail: Callable[[dict[str, Any]], str] | None = None) -> dict[str, Any]:
    """The results as a STAC ItemCollection (a dict ready for JSON)."""
    created = _created(engine)
    feats = []
    for h in results.hits:
        rec = h.item
        geom, bbox = _record_geometry(engine, rec, h.position)
        props: dict[str, Any] = {**datetime_fields(_full_date(engine, h.position, rec), created),
                                 "rsir:rank": h.rank, "rsir:distance": h.distance, "rsir:metric": results.metric,
                                 "rsir:labels": list(h.labels), "rsir:shares_label": h.shares_label}
        for k in ("split", "country"):
            if rec.get(k):
                props[f"rsir:{k}"] = rec[k]
        if "concepts_matched" in rec:
            props["rsir:concepts_matched"] = rec["concepts_matched"]
        feat: dict[str, Any] = {"type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": [],
                                "id": h.id, "geometry": geom, "properties": props, "links": [], "assets": {}}
        if bbox is not None:
            feat["bbox"] = bbox
        if thumbnail is not None:
            feat["assets"]["thumbnail"] = {"href": thumbnail(rec), "type": "image/png", "roles": ["thumbnail"],
                                           "title": "quicklook"}
        feats.append(feat)
    q = dict(results.query)
    if results.mode == "id" and q.get("id") is not None:
        p = engine.table.pos.get(str(q["id"]))
        geom, _ = _record_geometry(engine, q, p)
        q["geometry"] = geom
    q.pop("quicklook", None)
    return {"type": "FeatureCollection", "features": feats, "numberMatched": results.matching,
            "numberReturned": len(feats), "links": [],
            "rsir:mode": results.mode, "rsir:metric": results.metric, "rsir:k": results.k,
            "rsir:offset": results.offset, "rsir:precision": results.precision,
            "rsir:query_ms": results.query_ms, "rsir:query": q}
