"""STAC in: a local STAC catalog, collection, item or ItemCollection whose items point to Sentinel-2 or
Sentinel-1 GeoTIFF / COG assets, read with pystac and tiled into patches.

What is read (SpatioTemporal Asset Catalog 1.0 and 1.1; pystac resolves relative hrefs):
- the root: a ``catalog.json`` / ``collection.json`` / item JSON / ItemCollection (GeoJSON FeatureCollection)
  file, or a folder holding ``catalog.json`` or ``collection.json``; every item below it (recursively).
- band assets: an asset is a raster asset when its media type is a TIFF (or missing, with a .tif/.tiff href)
  and its roles are not thumbnail / overview / visual / metadata. Its bands are named, per band, by the first
  that applies: the band ``name`` when it is a Sentinel band name (``B02``, ``B2``, ``B8A``, ``VV``), the
  ``common_name`` (``eo:bands`` of STAC 1.0, ``bands`` with ``eo:common_name`` of STAC 1.1; red-edge by
  central wavelength), or, for a one-band asset, the asset key (``B02``, ``blue``, ``rededge1``, ``nir08``,
  ``swir16``, ``vv`` as Earth Search and Planetary Computer name them). A band offered by several assets is
  taken from the one with the fewest bands. Hrefs must be local files (no network is used).
- the modality: ``--option modality=s2|s1`` or, by default, the sensor whose bands the first item has
  (Sentinel-2: at least B02 B03 B04; Sentinel-1: VV and VH). Items of the other sensor are left out and
  counted in a note. The Sentinel-2 bands are the ones the first item has (all 12 L2A bands, or a subset such
  as B02 B03 B04 B08), in the L2A order; every item must have them.
- tiling (as the Major-TOM reader): with ``patch-size=N`` (default 120) a scene is cut into N x N patches of
  its finest band from the top-left corner, coarser bands at their own resolution (N / f pixels for a band f
  times coarser, so N must be divisible by every factor: 6 for Sentinel-2 60 m bands); partial tiles at the
  right and bottom edges are dropped. Patches are read through windows, one strip of patch rows per band at a
  time, so a full 10980 x 10980 scene never sits in memory. Patch ids are ``<item id>_<row>_<col>``.
  ``patch-size=0`` keeps every item whole (one patch per item, id = the STAC id, the item's geometry kept
  as it is); all items must then share the first one's band shapes.

Catalog columns: ``date`` (the item's datetime, or start_datetime), ``bbox`` / ``lon`` / ``lat`` (WGS84, of
the patch), ``geometry`` (GeoJSON text: the item's own geometry for whole items, the patch footprint
otherwise), ``crs`` / ``transform`` (native, of the patch's finest band), ``stac_id``, ``stac_collection``,
``stac_properties`` (the item's properties as JSON text, kept for export), ``platform``, ``cloud_cover``
(``eo:cloud_cover``), ``tile`` (``s2:mgrs_tile`` / ``grid:code``), ``patch_row`` / ``patch_col``. Labels:
``labels=PROPERTY`` names a property holding a list of class names (default ``rsir:labels`` when present);
tiles inherit their item's labels. ``split=PROPERTY`` likewise (default ``rsir:split``).
Sentinel-1 assets are stored as they are (dB expected); ``s1-linear=true`` converts linear backscatter to dB
(10 log10, values <= 0 become the smallest positive float first).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from rsir.data.bands import S1_BANDS, S2_BANDS, S2_L1C, ModalitySpec
from rsir.data.formats import Arrays, Source, SourceItem
from rsir.data.nomenclature import Nomenclature, nomenclature_from_labels
from rsir.data.options import ReaderOption
from rsir.errors import FormatError, ItemError

OPTIONS = (
    ReaderOption("patch-size", "int", "patch size in pixels of the finest band; 0 keeps every item whole", 120,
                 minimum=0),
    ReaderOption("modality", "choice", "sensor to read (default: the first item's)", choices=("s2", "s1")),
    ReaderOption("labels", "str", "item property holding a list of class names (default rsir:labels)"),
    ReaderOption("split", "str", "item property holding the split name (default rsir:split)"),
    ReaderOption("s1-linear", "bool", "Sentinel-1 assets hold linear backscatter: store 10*log10 (dB)", False),
)

#: Sentinel-2 common names (STAC eo extension) -> band; red edge is told apart by central wavelength
COMMON_NAMES = {"coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "nir08": "B8A",
                "nir09": "B09", "cirrus": "B10", "swir16": "B11", "swir22": "B12"}
#: asset keys used by public catalogs for one-band assets
ASSET_KEYS = {**COMMON_NAMES, "rededge1": "B05", "rededge2": "B06", "rededge3": "B07", "vv": "VV", "vh": "VH"}
REDEDGE_UM = {"B05": 0.705, "B06": 0.740, "B07": 0.783}
S2_ALL = tuple(b.name for b in S2_L1C)
S2_WAVELENGTH_UM = {b.name: b.wavelength_nm / 1000 for b in S2_L1C}
SKIP_ROLES = {"thumbnail", "overview", "visual", "metadata"}
WGS84 = "EPSG:4326"


def band_name(name: str | None, common: str | None = None, wavelength: float | None = None) -> str | None:
    """The Sentinel band a STAC band entry names (``B2`` -> ``B02``), or None when it names none."""
    if name:
        n = name.strip().upper()
        m = re.fullmatch(r"B0?(\d{1,2})(A?)", n)
        if m:
            cand = f"B{int(m.group(1))}A" if m.group(2) else f"B{int(m.group(1)):02d}"
            if cand in S2_ALL:
                return cand
        if n in S1_BANDS:
            return n
    if common:
        c = common.strip().lower()
        if c in COMMON_NAMES:
            return COMMON_NAMES[c]
        if c == "rededge" and wavelength:
            return min(REDEDGE_UM, key=lambda b: abs(REDEDGE_UM[b] - float(wavelength)))
    return None


def _bands_of(extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The band entries of an asset: STAC 1.1 ``bands`` or STAC 1.0 ``eo:bands`` (normalised keys)."""
    out = []
    for b in extra.get("bands") or extra.get("eo:bands") or []:
        if not isinstance(b, dict):
            continue
        out.append({"name": b.get("name"), "common": b.get("eo:common_name", b.get("common_name")),
                    "wavelength": b.get("eo:center_wavelength", b.get("center_wavelength"))})
    return out


def _is_raster(asset: Any) -> bool:
    roles = set(asset.roles or [])
    if roles & SKIP_ROLES and "data" not in roles:
        return False
    mt = (asset.media_type or "").lower()
    if mt:
        return "tiff" in mt
    return urlparse(asset.href).path.lower().endswith((".tif", ".tiff"))


def asset_bands(key: str, asset: Any) -> list[str | None]:
    """Band names of each band of a raster asset (None for a band that names no Sentinel band)."""
    entries = _bands_of(asset.extra_fields)
    if entries:
        names = [band_name(e["name"], e["common"], e["wavelength"]) for e in entries]
        if len(names) == 1 and names[0] is None:
            names = [band_name(key) or ASSET_KEYS.get(key.lower())]
        return names
    pols = asset.extra_fields.get("sar:polarizations")
    if isinstance(pols, list) and len(pols) == 1:
        return [band_name(str(pols[0]))]
    return [band_name(key) or ASSET_KEYS.get(key.lower())]


def local_path(href: str, item: str) -> Path:
    """A local file path from an asset href (ItemError for anything that is not on this machine)."""
    u = urlparse(href)
    if u.scheme in ("", "file"):
        return Path(unquote(u.path) if u.scheme == "file" else href)
    if len(u.scheme) == 1:  # a Windows drive letter
        return Path(href)
    raise ItemError(item, f"asset {href} is not a local file (rsir reads local STAC catalogs only: download the "
                          f"assets first, e.g. with stac-asset, and point the hrefs at them)")


@dataclass
class BandRef:
    """Where one band of an item is: a file and the 1-based band index in it."""

    path: Path
    index: int


def item_bands(item: Any) -> dict[str, BandRef]:
    """Sentinel band name -> file and index for one pystac Item (a band in several assets: fewest bands wins)."""
    found: dict[str, tuple[int, BandRef]] = {}
    for key, asset in item.assets.items():
        if not _is_raster(asset):
            continue
        names = asset_bands(key, asset)
        for i, b in enumerate(names):
            if b is None:
                continue
            ref = BandRef(local_path(asset.get_absolute_href() or asset.href, item.id), i + 1)
            if b not in found or len(names) < found[b][0]:
                found[b] = (len(names), ref)
    return {b: r for b, (_, r) in found.items()}


def load_items(root: Path) -> tuple[list[Any], str]:
    """Every pystac Item below a catalog / collection / item / ItemCollection file or folder, and what it was."""
    import pystac

    path = root
    if root.is_dir():
        for name in ("catalog.json", "collection.json"):
            if (root / name).exists():
                path = root / name
                break
        else:
            raise FormatError(f"{root}: no catalog.json or collection.json here; give the STAC file itself")
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise FormatError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(d, dict):
        raise FormatError(f"{path}: not a STAC object (a JSON object was expected)")
    try:
        if d.get("type") == "FeatureCollection":
            ic = pystac.ItemCollection.from_dict(d, preserve_dict=False)
            for it in ic.items:  # resolve relative asset hrefs against the file
                it.set_self_href(None)
                for a in it.assets.values():
                    if not urlparse(a.href).scheme and not Path(a.href).is_absolute():
                        a.href = str((path.parent / a.href).resolve())
            return list(ic.items), "ItemCollection"
        obj = pystac.read_file(str(path.resolve()))
    except pystac.STACError as e:
        raise FormatError(f"{path}: not a valid STAC object ({e})") from None
    except (KeyError, ValueError, TypeError) as e:
        raise FormatError(f"{path}: not a valid STAC object ({type(e).__name__}: {e})") from None
    if isinstance(obj, pystac.Item):
        return [obj], "Item"
    if isinstance(obj, pystac.Catalog):
        return list(obj.get_items(recursive=True)), type(obj).__name__
    raise FormatError(f"{path}: a STAC {type(obj).__name__} holds no items")


@dataclass
class _Header:
    """Header facts of one band file: size, transform, crs, dtype."""

    height: int
    width: int
    transform: Any
    crs: Any
    dtype: str


def _header(ref: BandRef, item: str) -> _Header:
    import rasterio
    import rasterio.errors

    try:
        with rasterio.open(ref.path) as ds:
            if ref.index > ds.count:
                raise ItemError(item, f"{ref.path.name} has {ds.count} bands, the catalog names band {ref.index}",
                                str(ref.path))
            return _Header(ds.height, ds.width, ds.transform, ds.crs, str(ds.dtypes[ref.index - 1]))
    except rasterio.errors.RasterioIOError as e:
        msg = "asset file missing" if not ref.path.exists() else f"unreadable GeoTIFF ({e})"
        raise ItemError(item, msg, str(ref.path)) from None


def _factors(heads: dict[str, _Header], item: str) -> dict[str, int]:
    """Each band's resolution as an integer multiple of the finest band's."""
    fine = min(abs(h.transform.a) for h in heads.values())
    out = {}
    for b, h in heads.items():
        f = abs(h.transform.a) / fine
        if fine <= 0 or abs(f - round(f)) > 1e-6:
            raise ItemError(item, f"band {b}: pixel size {abs(h.transform.a):g} is not a whole multiple of the "
                                  f"finest band's {fine:g}")
        out[b] = int(round(f))
    return out


@dataclass
class _Scene:
    """Open band files of one item and the strip of patch rows read last (row-major patch order)."""

    refs: dict[str, BandRef]
    factors: dict[str, int]
    datasets: dict[str, Any] = field(default_factory=dict)
    strip_row: int = -1
    strips: dict[str, np.ndarray] = field(default_factory=dict)

    def patch(self, item: str, n: int, r: int, c: int, cols: int) -> dict[str, np.ndarray]:
        import rasterio
        from rasterio.windows import Window

        if r != self.strip_row:
            self.strips = {}
            for b, ref in self.refs.items():
                k = n // self.factors[b]
                try:
                    if b not in self.datasets:
                        self.datasets[b] = rasterio.open(ref.path)
                    self.strips[b] = self.datasets[b].read(ref.index, window=Window(0, r * k, cols * k, k))
                except (rasterio.errors.RasterioIOError, OSError, ValueError) as e:
                    raise ItemError(item, f"band {b}: pixel data unreadable ({e})", str(ref.path)) from None
            self.strip_row = r
        return {b: np.ascontiguousarray(s[:, c * (n // self.factors[b]):(c + 1) * (n // self.factors[b])])
                for b, s in self.strips.items()}

    def whole(self, item: str) -> dict[str, np.ndarray]:
        import rasterio

        out = {}
        for b, ref in self.refs.items():
            try:
                with rasterio.open(ref.path) as ds:
                    out[b] = ds.read(ref.index)
            except (rasterio.errors.RasterioIOError, OSError, ValueError) as e:
                raise ItemError(item, f"band {b}: pixel data unreadable ({e})", str(ref.path)) from None
        return out

    def close(self) -> None:
        for ds in self.datasets.values():
            ds.close()
        self.datasets = {}
        self.strips = {}


def _sensor(bands: dict[str, BandRef]) -> str | None:
    if {"B02", "B03", "B04"} <= set(bands):
        return "s2"
    if {"VV", "VH"} <= set(bands):
        return "s1"
    return None


def _item_date(item: Any) -> str:
    dt = item.datetime or item.common_metadata.start_datetime
    return dt.isoformat().replace("+00:00", "Z") if dt is not None else ""


def _footprint(crs: Any, tr: Any, h: int, w: int) -> tuple[list[float], float, float, dict[str, Any]]:
    """WGS84 bbox, centre and polygon (corners and edge points) of a raster window."""
    from rasterio.warp import transform as warp_points
    from rasterio.warp import transform_bounds

    xs_px = [0, w / 2, w, w, w, w / 2, 0, 0, 0]
    ys_px = [0, 0, 0, h / 2, h, h, h, h / 2, 0]
    xs = [tr.c + tr.a * x + tr.b * y for x, y in zip(xs_px, ys_px, strict=True)]
    ys = [tr.f + tr.d * x + tr.e * y for x, y in zip(xs_px, ys_px, strict=True)]
    lons, lats = warp_points(crs, WGS84, xs, ys)
    ring = [[round(float(x), 7), round(float(y), 7)] for x, y in zip(lons, lats, strict=True)]
    if _signed_area(ring) < 0:  # GeoJSON (RFC 7946): exterior rings counter-clockwise
        ring = ring[::-1]
    bbox = [float(v) for v in transform_bounds(crs, WGS84, min(xs), min(ys), max(xs), max(ys), densify_pts=21)]
    cx, cy = warp_points(crs, WGS84, [tr.c + tr.a * w / 2 + tr.b * h / 2], [tr.f + tr.d * w / 2 + tr.e * h / 2])
    return bbox, float(cx[0]), float(cy[0]), {"type": "Polygon", "coordinates": [ring]}


def _signed_area(ring: list[list[float]]) -> float:
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:], strict=False))


def _to_db(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    return (10.0 * np.log10(np.maximum(a, np.finfo(np.float32).tiny))).astype(np.float32)


def read_stac(root: Path, options: dict[str, Any]) -> Source:
    """Items of a local STAC catalog / collection / ItemCollection, tiled into patches (or kept whole)."""
    from affine import Affine

    ps = options.get("patch-size")
    n = 120 if ps is None else int(ps)
    items, kind = load_items(root)
    if not items:
        raise FormatError(f"{root}: the STAC {kind} holds no items")
    bands_of = {it.id: item_bands(it) for it in items}
    want = options.get("modality")
    if want is None:
        first = next((it for it in items if _sensor(bands_of[it.id])), None)
        if first is None:
            it0 = items[0]
            raise FormatError(f"{root}: no item has Sentinel-2 (B02 B03 B04) or Sentinel-1 (VV VH) band assets; "
                              f"item {it0.id} has assets {', '.join(it0.assets) or 'none'} naming bands "
                              f"{', '.join(sorted(bands_of[it0.id])) or 'none'}")
        want = _sensor(bands_of[first.id])
    chosen = [it for it in items if _sensor(bands_of[it.id]) == want]
    if not chosen:
        raise FormatError(f"{root}: no item has {want} band assets (--option modality={want})")
    notes = []
    if len(chosen) < len(items):
        notes.append(f"{len(items) - len(chosen)} of {len(items)} STAC items have no {want} bands and are left "
                     f"out (--option modality=... picks the sensor)")
    first = chosen[0]
    names = [b for b in (S2_ALL if want == "s2" else S1_BANDS) if b in bands_of[first.id]]
    heads0 = {b: _header(bands_of[first.id][b], first.id) for b in names}
    f0 = _factors(heads0, first.id)
    for b, f in f0.items():
        if n and n % f:
            raise FormatError(f"--option patch-size={n}: band {b} of item {first.id} is {f} times coarser than "
                              f"the finest band, so the patch size must be divisible by {f}")
    shapes = ({b: (n // f0[b], n // f0[b]) for b in names} if n else
              {b: (heads0[b].height, heads0[b].width) for b in names})
    grid = (n, n) if n else max(shapes.values(), key=lambda s: s[0] * s[1])
    if want == "s2":
        spec = ModalitySpec("s2", names, shapes, "uint16", "reflectance*10000", grid,
                            "Sentinel-2 from STAC assets" + ("" if tuple(names) == S2_BANDS else f" ({','.join(names)})"))
    else:
        spec = ModalitySpec("s1", names, shapes, "float32", "dB", grid, "Sentinel-1 backscatter from STAC assets")
    lab_prop = str(options.get("labels") or "rsir:labels")
    split_prop = str(options.get("split") or "rsir:split")

    def labels_of(it: Any) -> list[str]:
        v = it.properties.get(lab_prop)
        if v is None:
            return []
        if isinstance(v, str):
            return [v]
        if isinstance(v, list):
            return [str(x) for x in v]
        raise FormatError(f"item {it.id}: property {lab_prop} is {type(v).__name__}, expected a list of class names")

    all_labels = [labels_of(it) for it in chosen]
    nomen = (nomenclature_from_labels(str(options.get("labels") or "labels"), all_labels)
             if any(all_labels) else Nomenclature("none", ()))
    s1_linear = bool(options.get("s1-linear", False))

    def base_meta(it: Any, labels: list[str]) -> dict[str, Any]:
        props = it.properties
        tile = props.get("s2:mgrs_tile") or props.get("grid:code") or props.get("mgrs:grid_square") or ""
        cc = props.get("eo:cloud_cover")
        return {"stac_id": it.id, "stac_collection": it.collection_id or "", "date": _item_date(it),
                "labels": labels, "split": str(props.get(split_prop) or ""), "tile": str(tile),
                "platform": str(props.get("platform") or ""),
                "cloud_cover": float(cc) if isinstance(cc, (int, float)) else math.nan,
                "stac_properties": json.dumps(props, default=str, sort_keys=True)}

    def convert(arrays: dict[str, np.ndarray]) -> Arrays:
        if want == "s1" and s1_linear:
            arrays = {b: _to_db(a) for b, a in arrays.items()}
        return {spec.name: arrays}

    def items_iter() -> Iterator[SourceItem]:
        for it, labels in zip(chosen, all_labels, strict=True):
            refs = {b: r for b, r in bands_of[it.id].items() if b in names}
            missing = [b for b in names if b not in refs]
            if missing:
                yield SourceItem(it.id, {"stac_id": it.id}, _fail(ItemError(it.id, f"no asset for band(s) "
                                 f"{', '.join(missing)} (the first item has {', '.join(names)})")))
                continue
            try:
                heads = {b: _header(refs[b], it.id) for b in names}
                factors = _factors(heads, it.id)
            except ItemError as e:
                yield SourceItem(it.id, {"stac_id": it.id}, _fail(e))
                continue
            fine = min(names, key=lambda b: factors[b])
            h0 = heads[fine]
            meta0 = base_meta(it, labels)
            scene = _Scene(refs, factors)
            if not n:
                bad = [b for b in names if (heads[b].height, heads[b].width) != shapes[b]]
                if bad:
                    b = bad[0]
                    yield SourceItem(it.id, meta0, _fail(ItemError(it.id, f"band {b} is {heads[b].height}x"
                                     f"{heads[b].width}, the first item's is {shapes[b][0]}x{shapes[b][1]}; "
                                     f"pass --option patch-size=N to tile the items", str(refs[b].path))))
                    continue
                meta = dict(meta0)
                bbox: list[float] | None
                if h0.crs is not None:
                    bbox, lon, lat, _poly = _footprint(h0.crs, h0.transform, h0.height, h0.width)
                    meta.update(crs=_crs_text(h0.crs), transform=list(h0.transform)[:6])
                else:
                    bbox, lon, lat = list(it.bbox or []) or None, math.nan, math.nan
                if it.bbox:
                    bbox = [float(v) for v in it.bbox]
                if it.geometry:
                    lon, lat = _centroid(it.geometry, lon, lat)
                meta.update(bbox=bbox, lon=lon, lat=lat, source=str(refs[fine].path),
                            geometry=json.dumps(it.geometry) if it.geometry else "")
                yield SourceItem(it.id, meta, lambda s=scene, i=it.id: convert(s.whole(i)))  # type: ignore[misc]
                continue
            if h0.crs is None:
                yield SourceItem(it.id, meta0, _fail(ItemError(it.id, "band files have no CRS: cannot place the "
                                 "patches (use --option patch-size=0 to keep items whole)", str(refs[fine].path))))
                continue
            rows, cols = h0.height // n, h0.width // n
            short = [b for b in names if heads[b].height < rows * (n // factors[b])
                     or heads[b].width < cols * (n // factors[b])]
            if rows == 0 or cols == 0 or short:
                why = (f"scene is {h0.height}x{h0.width} px, smaller than patch-size {n}" if not short else
                       f"band {short[0]} is too small for {rows}x{cols} patches")
                yield SourceItem(it.id, meta0, _fail(ItemError(it.id, why, str(refs[fine].path))))
                continue
            crs_text = _crs_text(h0.crs)
            for r in range(rows):
                for c in range(cols):
                    ptr = h0.transform @ Affine.translation(c * n, r * n)
                    bbox, lon, lat, poly = _footprint(h0.crs, ptr, n, n)
                    meta = {**meta0, "patch_row": r, "patch_col": c, "crs": crs_text, "transform": list(ptr)[:6],
                            "bbox": bbox, "lon": lon, "lat": lat, "geometry": json.dumps(poly),
                            "source": str(refs[fine].path)}
                    last = r == rows - 1 and c == cols - 1

                    def load(s: _Scene = scene, i: str = it.id, r: int = r, c: int = c, cols: int = cols,
                             last: bool = last) -> Arrays:
                        try:
                            return convert(s.patch(i, n, r, c, cols))
                        finally:
                            if last:
                                s.close()

                    yield SourceItem(f"{it.id}_{r}_{c}", meta, load)
            scene.close()  # the last patch closes too; this covers a consumer that stopped early

    total = None if n else len(chosen)
    info = {"stac": kind, "stac_items": len(chosen), "patch_size": n, "edge_tiles": "dropped" if n else None,
            "bands": names}
    return Source("stac", [spec], nomen, items_iter(), total, info=info, notes=notes)


def _crs_text(crs: Any) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def _centroid(geom: dict[str, Any], lon: float, lat: float) -> tuple[float, float]:
    """Mean of a geometry's outer-ring vertices (good enough for patch-sized footprints)."""
    try:
        coords = geom["coordinates"]
        ring = coords[0] if geom["type"] == "Polygon" else coords[0][0] if geom["type"] == "MultiPolygon" else None
        if geom["type"] == "Point":
            return float(coords[0]), float(coords[1])
        if ring:
            pts = ring[:-1] if ring[0] == ring[-1] else ring
            return float(np.mean([p[0] for p in pts])), float(np.mean([p[1] for p in pts]))
    except (KeyError, IndexError, TypeError, ValueError):
        pass
    return lon, lat


def _fail(err: ItemError) -> Any:
    def load() -> Arrays:
        raise err

    return load
