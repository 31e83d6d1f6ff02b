"""Shared GeoTIFF helpers for the readers: read bands with rasterio, turn georeferencing into catalog fields.

Every reader of a GeoTIFF-based format reads pixels and georeferencing through this module, so that errors
(unreadable file, wrong band count, NaN pixels) always name the file, and the catalog fields ``crs``,
``transform``, ``lon``, ``lat`` and ``bbox`` mean the same thing for every source: the native CRS as
``EPSG:n`` (or WKT when it has no EPSG code), the affine (a, b, c, d, e, f), the WGS84 position of the patch
centre, and the WGS84 bounds ``[min_lon, min_lat, max_lon, max_lat]`` from ``rasterio.warp.transform_bounds``
(densified edges, so a UTM square maps to the box that really contains it).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
import rasterio.warp
from rasterio.crs import CRS

from rsir.errors import ItemError

WGS84 = "EPSG:4326"


@dataclass
class GeoInfo:
    """Georeferencing of one raster in catalog terms (empty / NaN when the file has no CRS)."""

    crs: str
    transform: list[float] | None
    lon: float
    lat: float
    bbox: list[float] | None
    shape: tuple[int, int]

    def meta(self) -> dict[str, Any]:
        """The catalog fields crs, transform, lon, lat, bbox."""
        return {"crs": self.crs, "transform": self.transform, "lon": self.lon, "lat": self.lat, "bbox": self.bbox}


def crs_string(crs: CRS | None) -> str:
    """``EPSG:n`` when the CRS has an EPSG code, else its WKT; "" for no CRS."""
    if crs is None:
        return ""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def geo_from(crs: CRS | None, transform: Any, height: int, width: int) -> GeoInfo:
    """GeoInfo of a raster grid: native CRS and affine, WGS84 centre and bounds."""
    has_transform = transform is not None and not transform.is_identity
    tlist = [float(v) for v in tuple(transform)[:6]] if has_transform else None
    if crs is None or not has_transform:
        return GeoInfo(crs_string(crs), tlist, math.nan, math.nan, None, (height, width))
    a, b, c, d, e, f = tlist  # type: ignore[misc]

    def xy(col: float, row: float) -> tuple[float, float]:
        return c + a * col + b * row, f + d * col + e * row

    left, top = xy(0, 0)
    right, bottom = xy(width, height)
    xmin, xmax = min(left, right), max(left, right)
    ymin, ymax = min(top, bottom), max(top, bottom)
    try:
        bbox = list(rasterio.warp.transform_bounds(crs, WGS84, xmin, ymin, xmax, ymax, densify_pts=21))
        cx, cy = xy(width / 2.0, height / 2.0)
        lons, lats = rasterio.warp.transform(crs, WGS84, [cx], [cy])
        lon, lat = float(lons[0]), float(lats[0])
    except Exception:  # a CRS PROJ cannot transform: keep the native fields, leave WGS84 ones unknown
        return GeoInfo(crs_string(crs), tlist, math.nan, math.nan, None, (height, width))
    return GeoInfo(crs_string(crs), tlist, lon, lat, [float(v) for v in bbox], (height, width))


def _open(path: Path, item: str) -> rasterio.io.DatasetReader:
    try:
        with warnings.catch_warnings():
            # rasterio warns about files without georeferencing; a missing CRS is reported by GeoInfo instead
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(path)
    except (rasterio.errors.RasterioIOError, OSError) as e:
        raise ItemError(item, f"not a readable GeoTIFF ({e})", str(path)) from None


def read_geo(path: str | Path, item: str | None = None) -> GeoInfo:
    """Georeferencing of a GeoTIFF (header only)."""
    path = Path(path)
    with _open(path, item or path.stem) as ds:
        return geo_from(ds.crs, ds.transform, ds.height, ds.width)


@dataclass
class Raster:
    """The pixels (bands x height x width) of one file, its georeferencing and header facts."""

    data: np.ndarray
    geo: GeoInfo
    dtype: str
    descriptions: tuple[str | None, ...]
    nodata: float | None


def read_raster(path: str | Path, item: str | None = None, expect_bands: int | None = None,
                band_names: list[str] | None = None, check_finite: bool = True) -> Raster:
    """All bands of a GeoTIFF; ItemError naming the file when it is unreadable, has the wrong band count or
    holds NaN / infinite values in float data."""
    path = Path(path)
    item = item or path.stem
    with _open(path, item) as ds:
        if expect_bands is not None and ds.count != expect_bands:
            if band_names is not None:
                raise ItemError(item, f"{path.name} has {ds.count} bands, --bands names {expect_bands} "
                                      f"({','.join(band_names)})", str(path))
            raise ItemError(item, f"{path.name} has {ds.count} bands, expected {expect_bands}", str(path))
        try:
            data = ds.read()
        except (rasterio.errors.RasterioIOError, OSError, ValueError) as e:
            raise ItemError(item, f"{path.name}: pixel data unreadable ({e})", str(path)) from None
        geo = geo_from(ds.crs, ds.transform, ds.height, ds.width)
        raster = Raster(data, geo, str(ds.dtypes[0]), tuple(ds.descriptions), ds.nodata)
    if check_finite:
        check_finite_pixels(data, path, item)
    return raster


def read_band(path: str | Path, item: str | None = None, check_finite: bool = True) -> np.ndarray:
    """The single band of a one-band GeoTIFF as a 2-D array (ItemError naming the file otherwise)."""
    return read_raster(path, item, expect_bands=1, check_finite=check_finite).data[0]


def failing(err: ItemError) -> Callable[[], Any]:
    """A loader that raises ``err``: lets a reader list a broken item and report it when it is loaded."""
    def load() -> Any:
        raise err

    return load


def check_finite_pixels(data: np.ndarray, path: str | Path, item: str) -> None:
    """Raise an ItemError naming the file when float pixels are NaN or infinite."""
    if data.dtype.kind != "f":
        return
    finite = np.isfinite(data)
    if not finite.all():
        n = int(finite.size - finite.sum())
        raise ItemError(item, f"{Path(path).name} has {n} NaN or infinite pixel values", str(path))
