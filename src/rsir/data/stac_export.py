"""STAC out: an archive as a static, self-contained STAC 1.1 catalog that other tools open (pystac, QGIS, stac-browser).

Layout: ``DIR/catalog.json`` -> ``DIR/<collection>/collection.json`` -> ``DIR/<collection>/<item>/<item>.json`` with
the item's assets beside it; every link and asset href is relative, so the folder can be moved or served as it is.

An item is one archive patch: its id; its geometry (the one kept from a STAC source, else the WGS84 bbox as a
polygon, else the centre point, else null); bbox; datetime (the acquisition date; unknown dates are written as
``datetime: null`` with ``start_datetime`` 0001-01-01 and ``end_datetime`` the archive's creation, and
``rsir:datetime_unknown: true``); the properties a STAC source had (kept verbatim); rsir's own fields with the
``rsir:`` prefix (``rsir:labels``, ``rsir:split``, ``rsir:country``, ``rsir:nomenclature``) -- the labels that
``rsir ingest --format stac`` reads back. Extensions declared: projection (``proj:code`` or ``proj:wkt2``,
``proj:transform`` and ``proj:shape`` of the patch, per asset for bands of another resolution) and eo (band name,
common name and centre wavelength of each band asset).

Assets (``assets=``): ``thumbnail`` (default) a PNG quicklook per item; ``cog`` also one Cloud-Optimized
GeoTIFF per band at its native resolution, so the exported catalog can be ingested again
(``rsir ingest DIR --format stac --option patch-size=0`` gives the same ids, geometries, labels and pixels);
``none`` metadata only.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rsir.data.archive import Archive, is_archive_dir
from rsir.data.bands import S1_GRD, S2_L1C, png_bytes
from rsir.errors import RsirError
from rsir.storage import atomic_write_bytes, partial_sibling, replace_dir

ASSET_CHOICES = ("thumbnail", "cog", "none")
COMMON = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge", "B06": "rededge",
          "B07": "rededge", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B10": "cirrus", "B11": "swir16",
          "B12": "swir22"}
WAVELENGTH_UM = {b.name: b.wavelength_nm / 1000 for b in S2_L1C}
SAR = {b.name for b in S1_GRD}
UNKNOWN_START = "0001-01-01T00:00:00Z"


class ExportError(RsirError):
    """An export that cannot be written (target exists, archive unusable)."""


def safe_name(item_id: str) -> str:
    """A file-system-safe folder name for an item id (ids may hold '/', spaces or ':')."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("._") or "item"
    return s[:150]


def _parse_date(text: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        d = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            d = dt.datetime.fromisoformat(text[:10])
        except ValueError:
            return None
    return d if d.tzinfo else d.replace(tzinfo=dt.UTC)


def datetime_fields(date_text: str, unknown_end: dt.datetime) -> dict[str, Any]:
    """STAC datetime properties of a catalog date: ``datetime``, or for an unknown date ``datetime: null`` with
    the interval [0001-01-01, ``unknown_end``] and ``rsir:datetime_unknown: true`` (STAC needs one of the two)."""
    when = _parse_date(date_text)
    if when is not None:
        return {"datetime": when.isoformat().replace("+00:00", "Z")}
    return {"datetime": None, "start_datetime": UNKNOWN_START,
            "end_datetime": unknown_end.isoformat().replace("+00:00", "Z"), "rsir:datetime_unknown": True}


def item_geometry(row: dict[str, Any]) -> tuple[dict[str, Any] | None, list[float] | None]:
    """The GeoJSON geometry and bbox of an item from its catalog fields (``geometry`` text, ``bbox``, ``lon``/``lat``)."""
    return _geometry(row)


def _geometry(row: dict[str, Any]) -> tuple[dict[str, Any] | None, list[float] | None]:
    """The item's GeoJSON geometry and bbox from its catalog row."""
    geom = None
    g = row.get("geometry")
    if isinstance(g, str) and g:
        try:
            geom = json.loads(g)
        except ValueError:
            geom = None
    bbox = row.get("bbox")
    bbox = [float(v) for v in bbox] if bbox is not None and len(bbox) == 4 and all(
        math.isfinite(float(v)) for v in bbox) else None
    lon, lat = row.get("lon"), row.get("lat")
    if geom is None and bbox is not None:
        x0, y0, x1, y1 = bbox
        geom = {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}
    if geom is None and lon is not None and lat is not None and math.isfinite(lon) and math.isfinite(lat):
        geom = {"type": "Point", "coordinates": [float(lon), float(lat)]}
        bbox = [float(lon), float(lat), float(lon), float(lat)]
    return geom, bbox


def check_export_target(path: str | Path, overwrite: bool) -> Path:
    """Where a catalog may be written: a new path, or (``overwrite``) a STAC catalog folder or an empty one."""
    p = Path(path).expanduser().absolute()
    if p.exists() or p.is_symlink():
        if not overwrite:
            raise ExportError(f"{p} already exists (pass --overwrite to replace it)")
        ok = p.is_dir() and not p.is_symlink() and ((p / "catalog.json").exists() or not any(p.iterdir()))
        if not ok or is_archive_dir(p):
            raise ExportError(f"{p} exists and is not a STAC catalog folder; refusing to replace it")
    return p


def export_stac(archive: Archive, out: str | Path, assets: str = "thumbnail", overwrite: bool = False,
                limit: int | None = None, collection_id: str | None = None,
                progress: Callable[[int, int], Any] | None = None) -> Path:
    """Write ``archive`` as a static STAC catalog in ``out`` (atomically); returns the catalog.json path."""
    import pystac
    from pystac.extensions.eo import Band, EOExtension
    from pystac.extensions.projection import ProjectionExtension

    if assets not in ASSET_CHOICES:
        raise ExportError(f"assets={assets!r}: expected one of {', '.join(ASSET_CHOICES)}")
    target = check_export_target(out, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_sibling(target)
    tmp.mkdir()
    try:
        created = str(archive.manifest.get("created") or "") or dt.datetime.now(dt.UTC).isoformat()
        created_dt = _parse_date(created) or dt.datetime.now(dt.UTC)
        cid = safe_name(collection_id or archive.path.name)
        n = len(archive) if limit is None else min(limit, len(archive))
        mod = archive.primary_modality
        spec = archive.spec(mod)
        items = []
        dates: list[dt.datetime] = []
        boxes: list[list[float]] = []
        for p in range(n):
            row = archive.item(p)
            iid = str(row["id"])
            geom, bbox = _geometry(row)
            when = _parse_date(str(row.get("date") or ""))
            props: dict[str, Any] = {}
            if isinstance(row.get("stac_properties"), str) and row["stac_properties"]:
                try:
                    props.update(json.loads(row["stac_properties"]))
                except ValueError:
                    pass
            for k in ("datetime", "start_datetime", "end_datetime"):
                props.pop(k, None)
            if when is None:
                props.update({k: v for k, v in datetime_fields("", created_dt).items() if k != "datetime"})
            labels = list(row.get("labels") or [])
            props["rsir:labels"] = labels
            props["rsir:nomenclature"] = archive.nomenclature.name
            for k in ("split", "country"):
                if row.get(k):
                    props[f"rsir:{k}"] = str(row[k])
            item = pystac.Item(iid, geom, bbox, when, props, collection=cid)
            folder = tmp / cid / safe_name(iid)
            folder.mkdir(parents=True, exist_ok=True)
            crs, tr = str(row.get("crs") or ""), row.get("transform")
            tr = [float(v) for v in tr] if tr is not None and len(tr) == 6 else None
            if crs and tr:
                pe = ProjectionExtension.ext(item, add_if_missing=True)
                if crs.upper().startswith("EPSG:"):
                    pe.code = crs.upper()
                else:
                    pe.wkt2 = crs
                pe.transform = tr
                pe.shape = [int(spec.grid[0]), int(spec.grid[1])]
            if assets != "none" and mod in (row.get("modalities") or []):
                bands = archive.get(p, mod)
                from rsir.data.bands import quicklook

                atomic_write_bytes(folder / "thumbnail.png", png_bytes(quicklook(bands)))
                item.add_asset("thumbnail", pystac.Asset(str(folder / "thumbnail.png"), "quicklook",
                                                         media_type=pystac.MediaType.PNG, roles=["thumbnail"]))
                if assets == "cog":
                    _cog_assets(item, folder, bands, spec, crs, tr, EOExtension, Band, ProjectionExtension)
            items.append(item)
            if when is not None:
                dates.append(when)
            if bbox is not None:
                boxes.append(bbox)
            if progress is not None:
                progress(p + 1, n)
        if boxes:
            b = np.asarray(boxes)
            spatial = [float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())]
        else:
            spatial = [-180.0, -90.0, 180.0, 90.0]
        interval: list[dt.datetime | None] = [min(dates), max(dates)] if dates else [None, None]
        coll = pystac.Collection(
            cid, f"rsir archive {archive.path.name} ({archive.manifest.get('source_format')}, {len(archive)} items"
                 + (f", first {n} exported" if n < len(archive) else "") + ")",
            pystac.Extent(pystac.SpatialExtent([spatial]), pystac.TemporalExtent([interval])), license="other",
            extra_fields={"rsir:nomenclature": archive.nomenclature.name,
                          "rsir:classes": list(archive.nomenclature.classes)})
        coll.add_items(items)
        cat = pystac.Catalog(f"rsir-{cid}", f"STAC catalog of the rsir archive {archive.path.name}")
        cat.add_child(coll)

        def item_href(item: Any, parent_dir: str) -> str:
            return f"{parent_dir}/{safe_name(item.id)}/{safe_name(item.id)}.json"

        from pystac.layout import CustomLayoutStrategy

        cat.normalize_hrefs(str(tmp) + "/", strategy=CustomLayoutStrategy(item_func=item_href))
        cat.make_all_asset_hrefs_relative()
        cat.save(pystac.CatalogType.SELF_CONTAINED)
        replace_dir(tmp, target)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target / "catalog.json"


def _cog_assets(item: Any, folder: Path, bands: dict[str, np.ndarray], spec: Any, crs: str,
                tr: list[float] | None, EOExtension: Any, Band: Any, ProjectionExtension: Any) -> None:  # noqa: N803
    """One COG per band at its native resolution, with eo band and projection fields."""
    import pystac

    gh, gw = spec.grid
    for b in spec.bands:
        a = np.asarray(bands[b])
        h, w = a.shape
        btr = None
        if tr is not None:
            sx, sy = gw / w, gh / h
            btr = [tr[0] * sx, tr[1] * sy, tr[2], tr[3] * sx, tr[4] * sy, tr[5]]
        path = folder / f"{safe_name(b)}.tif"
        write_cog(path, a, crs or None, btr)
        asset = pystac.Asset(str(path), b, media_type=pystac.MediaType.COG, roles=["data"])
        item.add_asset(b, asset)
        if b in COMMON or b in WAVELENGTH_UM:
            EOExtension.ext(asset, add_if_missing=True).bands = [
                Band.create(name=b, common_name=COMMON.get(b), center_wavelength=WAVELENGTH_UM.get(b))]
        elif b in SAR:
            asset.extra_fields["sar:polarizations"] = [b]
        if btr is not None and (h, w) != (gh, gw):
            pe = ProjectionExtension.ext(asset)
            pe.transform = btr
            pe.shape = [h, w]


def write_cog(path: Path, a: np.ndarray, crs: str | None, transform: list[float] | None) -> Path:
    """A one-band Cloud-Optimized GeoTIFF (GDAL's COG driver, from a GTiff in memory), written atomically."""
    import rasterio
    import rasterio.shutil
    from affine import Affine
    from rasterio.io import MemoryFile

    from rsir.storage import atomic_file

    profile: dict[str, Any] = {"driver": "GTiff", "height": a.shape[0], "width": a.shape[1], "count": 1,
                               "dtype": str(a.dtype)}
    if crs and transform is not None:
        profile.update(crs=crs, transform=Affine(*transform))
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(a[None])
        with mem.open() as src, atomic_file(path) as tmp:
            rasterio.shutil.copy(src, str(tmp), driver="COG")
    return path
