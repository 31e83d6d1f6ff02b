"""SSL4EO-S12 (Wang et al., GRSM 2023): ``<root>/{s1,s2a,s2c}/<site>/<timestamp folder>/<band>.tif``.

Each site has one folder per season (four in the full release) under each of ``s1`` (Sentinel-1 GRD VV/VH),
``s2a`` (Sentinel-2 L2A) and ``s2c`` (Sentinel-2 L1C, with B10), one single-band GeoTIFF per band plus the
Google Earth Engine ``metadata.json`` of the scene. Patches are 264x264 at 10 m; in this release the 20 m bands
are 132x132 and the 60 m bands 44x44 (native resolution, as reBEN keeps them).

An item is one site and season: the k-th acquisition (in date order) of each of s2a, s2c and s1 of a site
becomes item ``<site>_<k>`` with modalities ``s2`` (L2A, bands renamed B1 -> B01 ... to reBEN's names),
``s2l1c`` (when the s2c folder is present) and ``s1``. The three products of one season are acquired on
different days (SSL4EO-S12 sampled each season independently per product), so the item keeps each date
(``s2_date``, ``s2l1c_date``, ``s1_date``); ``date`` is the L2A one (else L1C, else S1).

Sentinel-1 values in SSL4EO-S12 are already backscatter in dB (the GEE ``COPERNICUS/S1_GRD`` collection is
log-scaled; the real sample ranges about -35..+4), matching reBEN. ``--option s1-scale=linear`` converts
linear power with 10*log10 (values <= 0 clipped to 1e-10 first); the default ``auto`` treats a patch without
any negative value as linear power and every other patch as dB.

Georeferencing comes from the 10 m GeoTIFF of the item's first modality: ``crs``, affine ``transform``, WGS84
``bbox`` (rasterio.warp.transform_bounds) and centroid. The dataset is unlabelled (nomenclature ``none``).
Options: ``modalities=s2,s2l1c,s1`` (subset, default all present).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rsir.data.bands import S2_L1C, ModalitySpec, s1_spec, s2_spec
from rsir.data.formats import Arrays, Source, SourceItem
from rsir.data.nomenclature import Nomenclature
from rsir.data.options import ReaderOption
from rsir.errors import FormatError, ItemError

UNLABELLED = Nomenclature("none", ())
SIZE = 264
# folder in the release -> modality name in the archive
FOLDERS = {"s2a": "s2", "s2c": "s2l1c", "s1": "s1"}
_TIME = re.compile(r"(\d{8})T(\d{6})")
_TILE = re.compile(r"_T(\d{2}[A-Z]{3})(?:_|$)")


def ssl4eo_band_name(name: str) -> str:
    """reBEN band name of an SSL4EO-S12 file stem: B1 -> B01, B8A -> B8A, VV -> VV."""
    m = re.fullmatch(r"B(\d{1,2})(A?)", name)
    if not m:
        return name
    return f"B{int(m.group(1)):02d}{m.group(2)}" if not m.group(2) else f"B{int(m.group(1))}A"


def _file_band(band: str) -> str:
    """File stem of a reBEN band name in SSL4EO-S12: B01 -> B1, B8A -> B8A."""
    m = re.fullmatch(r"B(\d{2})", band)
    return f"B{int(m.group(1))}" if m else band


def s2l1c_spec(size: int = SIZE, name: str = "s2l1c") -> ModalitySpec:
    """Sentinel-2 L1C (13 bands, with B10) at native resolutions for a patch of ``size`` px at 10 m."""
    shapes = {b.name: (int(size * 10 // b.gsd),) * 2 for b in S2_L1C}
    return ModalitySpec(name, [b.name for b in S2_L1C], shapes, "uint16", "reflectance*10000",  # type: ignore[arg-type]
                        (size, size), "Sentinel-2 L1C top-of-atmosphere reflectance")


def _spec(modality: str) -> ModalitySpec:
    if modality == "s2":
        return s2_spec(SIZE)
    if modality == "s2l1c":
        return s2l1c_spec(SIZE)
    return s1_spec(SIZE)


def parse_time(folder: str) -> str:
    """ISO datetime of the first ``YYYYMMDDTHHMMSS`` stamp in a folder name ("" when there is none)."""
    m = _TIME.search(folder)
    if not m:
        return ""
    d, t = m.groups()
    return f"{d[0:4]}-{d[4:6]}-{d[6:8]}T{t[0:2]}:{t[2:4]}:{t[4:6]}"


def _time_from_metadata(folder: Path) -> str:
    mj = folder / "metadata.json"
    if not mj.exists():
        return ""
    try:
        ms = json.loads(mj.read_text()).get("system:time_start")
    except (OSError, json.JSONDecodeError):
        return ""
    if ms is None:
        return ""
    import datetime as dt

    return dt.datetime.fromtimestamp(float(ms) / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _season_folders(site_dir: Path) -> list[tuple[str, Path]]:
    out = []
    for f in site_dir.iterdir():
        if f.is_dir():
            out.append((parse_time(f.name) or _time_from_metadata(f), f))
    # acquisition order; folders without a date go last, by name
    return sorted(out, key=lambda tf: (tf[0] == "", tf[0], tf[1].name))


OPTIONS = (
    ReaderOption("modalities", "list", "subset of s2,s2l1c,s1 to ingest; default: every one present"),
    ReaderOption("s1-scale", "choice", "unit of the Sentinel-1 files: dB, linear power (converted to dB), or auto "
                 "(a patch without negative values is linear)", "auto", choices=("auto", "db", "linear")),
)


def read_ssl4eo(root: Path, options: dict[str, Any]) -> Source:
    """Items of an SSL4EO-S12 folder: one per site and season, with s2 / s2l1c / s1 modalities."""
    root = Path(root)
    present = [m for f, m in FOLDERS.items() if (root / f).is_dir()]
    if not present:
        raise FormatError(f"{root}: not an SSL4EO-S12 folder (expected subfolders {', '.join(FOLDERS)})")
    wanted = present
    if options.get("modalities"):
        wanted = list(options["modalities"])
        bad = [m for m in wanted if m not in present]
        if bad:
            raise FormatError(f"{root}: modalities {bad} not available (present: {present})")
    s1_scale = str(options.get("s1-scale") or "auto")
    folder_of = {m: f for f, m in FOLDERS.items()}
    sites = sorted({p.name for m in wanted for p in (root / folder_of[m]).iterdir() if p.is_dir()})
    # site -> modality -> season folders in date order
    seasons: dict[str, dict[str, list[tuple[str, Path]]]] = {}
    for site in sites:
        seasons[site] = {m: _season_folders(root / folder_of[m] / site) for m in wanted
                         if (root / folder_of[m] / site).is_dir()}
    n = sum(max((len(v) for v in s.values()), default=0) for s in seasons.values())
    specs = [_spec(m) for m in ("s2", "s2l1c", "s1") if m in wanted]

    def items() -> Iterator[SourceItem]:
        for site in sites:
            per = seasons[site]
            k_max = max((len(v) for v in per.values()), default=0)
            for k in range(k_max):
                folders = {m: per[m][k] for m in ("s2", "s2l1c", "s1") if m in per and k < len(per[m])}
                item_id = f"{site}_{k}"
                meta: dict[str, Any] = {"site": site, "season": k,
                                        "source": ";".join(str(p) for _, p in folders.values())}
                for m, (t, p) in folders.items():
                    meta[f"{m}_date"] = t
                    meta[f"{m}_product"] = p.name
                for m in ("s2", "s2l1c", "s1"):
                    meta.setdefault(f"{m}_date", "")
                    meta.setdefault(f"{m}_product", "")
                meta["s1_id"] = meta["s1_product"]
                meta["date"] = next((folders[m][0] for m in ("s2", "s2l1c", "s1") if m in folders), "")
                tile = next((mt.group(1) for _, p in folders.values() if (mt := _TILE.search(p.name))), "")
                meta["tile"] = tile
                meta["cloud_percentage"] = _cloud_pct(folders.get("s2", folders.get("s2l1c")))
                m0 = next(iter(folders))
                meta.update(_georef(folders[m0][1], "VV" if m0 == "s1" else "B02", item_id))
                yield SourceItem(item_id, meta, _loader(item_id, {m: p for m, (_, p) in folders.items()},
                                                        s1_scale))

    return Source("ssl4eo", specs, UNLABELLED, items(), n,
                  info={"s1_unit": "dB", "s1_scale": s1_scale, "size": SIZE, "pairing": "k-th acquisition "
                        "in date order of each product per site"})


def _cloud_pct(tf: tuple[str, Path] | None) -> float:
    if tf is None:
        return float("nan")
    mj = tf[1] / "metadata.json"
    try:
        v = json.loads(mj.read_text()).get("CLOUDY_PIXEL_PERCENTAGE")
    except FileNotFoundError:
        return float("nan")
    except (OSError, json.JSONDecodeError) as e:
        raise FormatError(f"{mj}: unreadable metadata.json ({e})") from None
    return float(v) if v is not None else float("nan")


def _georef(folder: Path, band: str, item: str) -> dict[str, Any]:
    import rasterio
    from rasterio.warp import transform as warp_points
    from rasterio.warp import transform_bounds

    path = folder / f"{_file_band(band)}.tif"
    if not path.exists():
        cands = sorted(folder.glob("*.tif"))
        if not cands:
            return {}
        path = cands[0]
    try:
        with rasterio.open(path) as ds:
            crs, tr, b = ds.crs, ds.transform, ds.bounds
    except rasterio.errors.RasterioIOError as e:
        raise ItemError(item, f"unreadable GeoTIFF ({e})", str(path)) from None
    if crs is None:
        return {"transform": [tr.a, tr.b, tr.c, tr.d, tr.e, tr.f]}
    bbox = list(transform_bounds(crs, "EPSG:4326", b.left, b.bottom, b.right, b.top, densify_pts=21))
    xs, ys = warp_points(crs, "EPSG:4326", [(b.left + b.right) / 2], [(b.bottom + b.top) / 2])
    return {"crs": crs.to_string(), "transform": [tr.a, tr.b, tr.c, tr.d, tr.e, tr.f], "bbox": bbox,
            "lon": float(xs[0]), "lat": float(ys[0])}


def read_band(path: Path, item: str) -> np.ndarray:
    """The first band of a single-band GeoTIFF, with an ItemError naming the file when it is unreadable."""
    import rasterio

    try:
        with rasterio.open(path) as ds:
            return ds.read(1)
    except rasterio.errors.RasterioIOError as e:
        msg = "file missing" if not path.exists() else f"unreadable GeoTIFF ({e})"
        raise ItemError(item, msg, str(path)) from None


def to_db(a: np.ndarray, scale: str) -> np.ndarray:
    """Sentinel-1 backscatter in dB: unchanged for dB input, 10*log10 for linear power (``auto``: no negatives)."""
    a = np.asarray(a, dtype=np.float32)
    finite = a[np.isfinite(a)]
    linear = scale == "linear" or (scale == "auto" and finite.size > 0 and float(finite.min()) >= 0.0)
    if not linear:
        return a
    return (10.0 * np.log10(np.maximum(a, 1e-10))).astype(np.float32)


def _loader(item: str, folders: dict[str, Path], s1_scale: str):  # type: ignore[no-untyped-def]
    def load() -> Arrays:
        out: Arrays = {}
        for m, folder in folders.items():
            spec = _spec(m)
            bands = {b: read_band(folder / f"{_file_band(b)}.tif", item) for b in spec.bands}
            if m == "s1":
                # both polarisations decide together, so a patch is never half dB, half linear
                both = np.stack([bands["VV"], bands["VH"]]).astype(np.float32)
                conv = to_db(both, s1_scale)
                bands = {"VV": conv[0], "VH": conv[1]}
            out[m] = bands
        return out

    return load

