"""Major-TOM Core-S2L2A (Francis & Czerkawski, IGARSS 2024) grid cells tiled into patches.

Layout: ``<root>/S2L2A/<row>/<row>_<col>/<product id>/<band>.tif`` with grid cell names such as ``0U_199R``
(row 0 up from the equator, column 199 right of the anti-meridian-free origin, 10 km cells). A cell holds the
Sentinel-2 L2A bands at native resolution -- 1068x1068 at 10 m (B02 B03 B04 B08), 534x534 at 20 m (B05 B06 B07
B8A B11 B12), 178x178 at 60 m (B01 B09), uint16 reflectance*10000 -- and ``cloud_mask.tif``, a 10 m uint8 mask
(0 = clear; the non-zero classes are cloud and cloud shadow).

Each cell is cut into patches of ``--option patch-size=N`` pixels at 10 m (default 120, as reBEN); the 20 m and
60 m bands are cut at their own resolution (N/2 and N/6 pixels), so N must be divisible by 6. Patches are laid out
from the cell's top-left corner; partial tiles at the right and bottom edges are dropped (1068 = 8 * 120 + 108,
so with N = 120 a cell gives 8 x 8 = 64 patches and its last 108 pixel rows and columns are not used).
A patch keeps its georeferencing: crs, its own affine transform (the cell's, shifted by the patch offset), the
WGS84 bbox and centroid. The cloud mask becomes the ``cloud`` modality (band ``mask``, N x N, the source values)
and the ``cloud_fraction`` catalog column (share of non-zero mask pixels). Catalog also has ``cell``,
``grid_row``, ``grid_col``, ``patch_row``, ``patch_col``, ``product_id``; unlabelled (nomenclature ``none``).
Options: ``patch-size=N``, ``cloud=false`` (leave the cloud modality out; the fraction column stays).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rsir.data.bands import S2_BANDS, S2_L2A, ModalitySpec, s2_spec
from rsir.data.formats import Arrays, Source, SourceItem
from rsir.data.nomenclature import Nomenclature
from rsir.data.options import ReaderOption
from rsir.errors import FormatError, ItemError

UNLABELLED = Nomenclature("none", ())
_CELL = re.compile(r"^(?P<row>\d+[UD])_(?P<col>\d+[LR])$")
_PRODUCT = re.compile(r"^(?P<mission>S2[ABC])_MSIL2A_(?P<date>\d{8}T\d{6})_N\d{4}_R\d{3}_T(?P<tile>\w{5})_")
CLOUD_FILE = "cloud_mask.tif"
GSD = {b.name: int(b.gsd) for b in S2_L2A}


def cloud_spec(size: int) -> ModalitySpec:
    """The Major-TOM cloud mask of a patch: one uint8 band ``mask`` on the 10 m grid."""
    return ModalitySpec("cloud", ["mask"], {"mask": (size, size)}, "uint8", "class (0 = clear)", (size, size),
                        "Major-TOM cloud mask (0 clear, non-zero cloud or shadow)")


def find_products(root: Path) -> list[Path]:
    """Product folders (holding B02.tif) under a Major-TOM root, a cell folder or a product folder."""
    root = Path(root)
    if (root / "B02.tif").exists():
        return [root]
    return sorted(p.parent for p in root.rglob("B02.tif"))


def _cell_of(product: Path) -> str:
    for part in (product.parent.name, product.name):
        if _CELL.match(part):
            return part
    return product.parent.name


def _read(path: Path, item: str) -> tuple[np.ndarray, Any, Any]:
    import rasterio

    try:
        with rasterio.open(path) as ds:
            return ds.read(1), ds.transform, ds.crs
    except rasterio.errors.RasterioIOError as e:
        msg = "file missing" if not path.exists() else f"unreadable GeoTIFF ({e})"
        raise ItemError(item, msg, str(path)) from None


def _cell_shape(product: Path) -> tuple[int, int, Any, Any]:
    import rasterio

    path = product / "B02.tif"
    try:
        with rasterio.open(path) as ds:
            return ds.height, ds.width, ds.transform, ds.crs
    except rasterio.errors.RasterioIOError as e:
        raise FormatError(f"{path}: unreadable GeoTIFF ({e})") from None


OPTIONS = (
    ReaderOption("patch-size", "int", "patch size in pixels at 10 m, a multiple of 6", 120, minimum=6),
    ReaderOption("cloud", "bool", "store the cloud mask as modality cloud (cloud_fraction is kept either way)", True),
)


def read_majortom(root: Path, options: dict[str, Any]) -> Source:
    """Patches of Major-TOM S2 L2A grid cells, each with its own georeferencing and cloud fraction."""
    from rasterio.transform import Affine
    from rasterio.warp import transform as warp_points
    from rasterio.warp import transform_bounds

    n = int(options.get("patch-size") or 120)
    if n <= 0 or n % 6:
        raise FormatError(f"--option patch-size={n}: must be a positive multiple of 6, so that the 20 m and 60 m "
                          f"bands tile exactly (N/2 and N/6 pixels)")
    with_cloud = bool(options.get("cloud", True))
    products = find_products(root)
    if not products:
        raise FormatError(f"{root}: no Major-TOM product folder (with B02.tif) found; expected "
                          f"S2L2A/<row>/<row>_<col>/<product>/B02.tif")
    cells: list[tuple[Path, int, int, Any, Any]] = []
    for p in products:
        h, w, tr, crs = _cell_shape(p)
        if h < n or w < n:
            raise FormatError(f"{p / 'B02.tif'}: cell of {h}x{w} pixels is smaller than patch-size {n}")
        cells.append((p, h // n, w // n, tr, crs))
    per_cell: dict[str, int] = {}
    for p, *_ in cells:
        per_cell[_cell_of(p)] = per_cell.get(_cell_of(p), 0) + 1
    total = sum(r * c for _, r, c, _, _ in cells)
    specs = [s2_spec(n)] + ([cloud_spec(n)] if with_cloud else [])

    def items() -> Iterator[SourceItem]:
        for product, rows, cols, tr, crs in cells:
            cell = _cell_of(product)
            m = _CELL.match(cell)
            pm = _PRODUCT.match(product.name)
            date, tile = "", ""
            if pm:
                d = pm.group("date")
                date = f"{d[0:4]}-{d[4:6]}-{d[6:8]}T{d[9:11]}:{d[11:13]}:{d[13:15]}"
                tile = pm.group("tile")
            # one reading of the cell serves all its patches: items of a cell are consumed in a row
            cache: dict[str, Any] = {}

            def cell_bands(product: Path = product, cell: str = cell, cache: dict[str, Any] = cache,
                           rows: int = rows, cols: int = cols) -> Any:
                if "bands" not in cache:
                    names = list(S2_BANDS) + [CLOUD_FILE[:-4]]
                    cache["bands"] = {b: _read(product / f"{b}.tif", cell)[0] for b in names}
                    _check_cell(cache["bands"], n, rows, cols, product, cell)
                return cache["bands"]

            prefix = cell if per_cell[cell] == 1 else f"{cell}_{product.name[:26]}"
            for r in range(rows):
                for c in range(cols):
                    pid = f"{prefix}_{r}_{c}"
                    ptr = tr @ Affine.translation(c * n, r * n)
                    left, top = ptr.c, ptr.f
                    right, bottom = left + ptr.a * n, top + ptr.e * n
                    bbox = list(transform_bounds(crs, "EPSG:4326", min(left, right), min(top, bottom),
                                                 max(left, right), max(top, bottom), densify_pts=21))
                    xs, ys = warp_points(crs, "EPSG:4326", [(left + right) / 2], [(top + bottom) / 2])
                    meta: dict[str, Any] = {
                        "cell": cell, "grid_row": m.group("row") if m else "", "grid_col": m.group("col") if m else "",
                        "patch_row": r, "patch_col": c, "product_id": product.name, "date": date, "tile": tile,
                        "crs": crs.to_string() if crs else "", "transform": [ptr.a, ptr.b, ptr.c, ptr.d, ptr.e, ptr.f],
                        "bbox": bbox, "lon": float(xs[0]), "lat": float(ys[0]), "source": str(product),
                    }
                    # load() adds cloud_fraction to meta: it needs the mask pixels, and ingest writes meta after load
                    yield SourceItem(pid, meta, _loader(pid, r, c, n, cell_bands, with_cloud, meta))

    return Source("majortom", specs, UNLABELLED, items(), total,
                  info={"patch_size": n, "edge_tiles": "dropped", "cells": len(cells)})


def _check_cell(bands: dict[str, np.ndarray], n: int, rows: int, cols: int, product: Path, cell: str) -> None:
    for b, a in bands.items():
        g = GSD.get(b, 10)
        k = n * 10 // g
        if a.shape[0] < rows * k or a.shape[1] < cols * k:
            raise ItemError(cell, f"band {b} is {a.shape[0]}x{a.shape[1]}, too small for {rows}x{cols} patches "
                                  f"of {k} px at {g} m", str(product / f"{b}.tif"))


def _loader(pid: str, r: int, c: int, n: int, cell_bands: Any, with_cloud: bool,  # type: ignore[no-untyped-def]
            meta: dict[str, Any]):
    def load() -> Arrays:
        bands = cell_bands()
        s2: dict[str, np.ndarray] = {}
        for b in S2_BANDS:
            k = n * 10 // GSD[b]
            s2[b] = np.ascontiguousarray(bands[b][r * k:(r + 1) * k, c * k:(c + 1) * k])
        mask = np.ascontiguousarray(bands["cloud_mask"][r * n:(r + 1) * n, c * n:(c + 1) * n])
        meta["cloud_fraction"] = float((mask != 0).mean())
        out: Arrays = {"s2": s2}
        if with_cloud:
            out["cloud"] = {"mask": mask}  # a mask of another dtype is converted or refused by the writer
        return out

    return load
