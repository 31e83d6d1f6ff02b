"""Write tiny STAC fixtures in the real layouts, with Cloud-Optimized GeoTIFF assets (written by GDAL's COG
driver), so that the STAC reader is tested on what public catalogs look like:

- ``scenes/``: a static catalog in the STAC 1.0.0 layout of Earth Search (``catalog.json`` -> collection
  ``sentinel-2-l2a/collection.json`` -> ``<item>/<item>.json`` with the assets beside it): two Sentinel-2 L2A
  "scenes" (36 x 36 and 40 x 30 pixels at 10 m, UTM 33N) with one COG per band under Earth Search's asset keys
  (``coastal``, ``blue``, ..., ``rededge1``, ``nir08``, ``swir16``) and ``eo:bands`` entries, a 3-band ``visual``
  COG and a PNG ``thumbnail`` (both to be ignored), and one Sentinel-1 item in a collection ``sentinel-1-grd``
  (``vv`` / ``vh`` float32 dB COGs, ``sar:polarizations``).
- ``patches.json``: a STAC 1.1 ItemCollection of 4 whole 12 x 12 patches (assets keyed ``B02`` ..., ``bands``
  with ``eo:common_name``), with ``rsir:labels`` and ``rsir:split`` properties.

Pixel values are functions of the scene, band and position (:func:`band_array`), so a test can cut the
expected patch out of the scene itself.

    python -m tests.data.make_stac_fixture OUTDIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.io import MemoryFile

S2 = [  # (band, Earth Search key, common name, gsd m, centre um)
    ("B01", "coastal", "coastal", 60, 0.443), ("B02", "blue", "blue", 10, 0.49), ("B03", "green", "green", 10, 0.56),
    ("B04", "red", "red", 10, 0.665), ("B05", "rededge1", "rededge", 20, 0.704),
    ("B06", "rededge2", "rededge", 20, 0.74), ("B07", "rededge3", "rededge", 20, 0.783),
    ("B08", "nir", "nir", 10, 0.842), ("B8A", "nir08", "nir08", 20, 0.865), ("B09", "nir09", "nir09", 60, 0.945),
    ("B11", "swir16", "swir16", 20, 1.61), ("B12", "swir22", "swir22", 20, 2.19),
]
GSD = {b: g for b, _, _, g, _ in S2}
CRS = "EPSG:32633"
#: scenes: id, 10 m height, 10 m width, upper-left x, y, datetime
SCENES = [
    ("S2B_33UUP_20210705_0_L2A", 36, 36, 390000.0, 5348400.0, "2021-07-05T10:10:29Z"),
    ("S2A_33UUP_20211223_0_L2A", 30, 40, 391000.0, 5347400.0, "2021-12-23T10:20:11Z"),
]
S1_ITEM = ("S1A_IW_GRDH_1SDV_20210706T165043", 24, 24, 390000.0, 5348400.0, "2021-07-06T16:50:43Z")
PATCHES = [  # id, labels, split, upper-left x, datetime
    ("P0", ["forest"], "train", 400000.0, "2020-01-15T10:00:00Z"),
    ("P1", ["forest", "water"], "train", 400120.0, "2020-04-15T10:00:00Z"),
    ("P2", ["water"], "test", 400240.0, "2020-07-15T10:00:00Z"),
    ("P3", ["urban"], "test", 400360.0, "2020-10-15T10:00:00Z"),
]


def band_array(scene: int, band: str, h10: int, w10: int) -> np.ndarray:
    """Band ``band`` of scene ``scene`` at its own resolution: 1000 * (band number) + 100 * scene + a ramp."""
    f = GSD.get(band, 10) // 10
    h, w = -(-h10 // f), -(-w10 // f)
    k = [b for b, *_ in S2].index(band) + 1 if band in GSD else 1
    return (1000 * k + 100 * scene + (np.arange(h * w).reshape(h, w) % 97)).astype(np.uint16)


def s1_array(pol: str, h: int, w: int) -> np.ndarray:
    base = -9.0 if pol == "VV" else -16.0
    return (base + 0.01 * (np.arange(h * w).reshape(h, w) % 89)).astype(np.float32)


def write_cog(path: Path, data: np.ndarray, x0: float, y0: float, gsd: float, crs: str = CRS) -> Path:
    """A Cloud-Optimized GeoTIFF of a (bands, h, w) or (h, w) array (GDAL's COG driver, via a GTiff in memory)."""
    a = data[None] if data.ndim == 2 else data
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "height": a.shape[1], "width": a.shape[2], "count": a.shape[0],
               "dtype": str(a.dtype), "crs": crs, "transform": Affine(gsd, 0.0, x0, 0.0, -gsd, y0)}
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(a)
        with mem.open() as src:
            rasterio.shutil.copy(src, str(path), driver="COG")
    return path


def _bbox_geom(x0: float, y0: float, w_m: float, h_m: float) -> tuple[list[float], dict]:
    from rasterio.warp import transform, transform_bounds

    b = list(transform_bounds(CRS, "EPSG:4326", x0, y0 - h_m, x0 + w_m, y0))
    xs, ys = transform(CRS, "EPSG:4326", [x0, x0 + w_m, x0 + w_m, x0, x0], [y0 - h_m, y0 - h_m, y0, y0, y0 - h_m])
    ring = [[round(x, 7), round(y, 7)] for x, y in zip(xs, ys, strict=True)]
    return [round(v, 7) for v in b], {"type": "Polygon", "coordinates": [ring]}


def _link(rel: str, href: str, kind: str = "application/json") -> dict:
    return {"rel": rel, "href": href, "type": kind}


def write_scenes(root: Path) -> Path:
    """The STAC 1.0.0 static catalog of two S2 scenes and one S1 item; returns catalog.json."""
    root.mkdir(parents=True, exist_ok=True)
    cols = {"sentinel-2-l2a": [], "sentinel-1-grd": []}
    for s, (iid, h, w, x0, y0, when) in enumerate(SCENES):
        d = root / "sentinel-2-l2a" / iid
        assets = {}
        for b, key, common, gsd, um in S2:
            write_cog(d / f"{b}.tif", band_array(s, b, h, w), x0, y0, gsd)
            assets[key] = {"href": f"./{b}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                           "title": f"{common} ({b})", "roles": ["data", "reflectance"],
                           "eo:bands": [{"name": b, "common_name": common, "center_wavelength": um}]}
        tci = np.stack([band_array(s, b, h, w) // 40 for b in ("B04", "B03", "B02")]).astype(np.uint8)
        write_cog(d / "TCI.tif", tci, x0, y0, 10)
        assets["visual"] = {"href": "./TCI.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                            "roles": ["visual"], "eo:bands": [{"name": "red", "common_name": "red"},
                                                              {"name": "green", "common_name": "green"},
                                                              {"name": "blue", "common_name": "blue"}]}
        from PIL import Image

        Image.fromarray(np.moveaxis(tci, 0, -1)).save(d / "thumbnail.png")
        assets["thumbnail"] = {"href": "./thumbnail.png", "type": "image/png", "roles": ["thumbnail"]}
        bbox, geom = _bbox_geom(x0, y0, w * 10, h * 10)
        cols["sentinel-2-l2a"].append(iid)
        item = {"type": "Feature", "stac_version": "1.0.0", "id": iid, "collection": "sentinel-2-l2a",
                "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
                "geometry": geom, "bbox": bbox,
                "properties": {"datetime": when, "platform": "sentinel-2" + "ba"[s], "constellation": "sentinel-2",
                               "instruments": ["msi"], "eo:cloud_cover": 3.5 + s, "s2:mgrs_tile": "33UUP"},
                "links": [_link("root", "../../catalog.json"), _link("parent", "../collection.json"),
                          _link("collection", "../collection.json")],
                "assets": assets}
        (d / f"{iid}.json").write_text(json.dumps(item, indent=1))
    iid, h, w, x0, y0, when = S1_ITEM
    d = root / "sentinel-1-grd" / iid
    for pol in ("VV", "VH"):
        write_cog(d / f"{pol.lower()}.tif", s1_array(pol, h, w), x0, y0, 10)
    bbox, geom = _bbox_geom(x0, y0, w * 10, h * 10)
    item = {"type": "Feature", "stac_version": "1.0.0", "id": iid, "collection": "sentinel-1-grd",
            "stac_extensions": ["https://stac-extensions.github.io/sar/v1.0.0/schema.json"],
            "geometry": geom, "bbox": bbox,
            "properties": {"datetime": when, "platform": "sentinel-1a", "constellation": "sentinel-1",
                           "sar:polarizations": ["VV", "VH"], "sar:instrument_mode": "IW"},
            "links": [_link("root", "../../catalog.json"), _link("parent", "../collection.json"),
                      _link("collection", "../collection.json")],
            "assets": {p.lower(): {"href": f"./{p.lower()}.tif", "type": "image/tiff; application=geotiff",
                                   "roles": ["data"], "sar:polarizations": [p]} for p in ("VV", "VH")}}
    cols["sentinel-1-grd"].append(iid)
    (d / f"{iid}.json").write_text(json.dumps(item, indent=1))
    for cid, ids in cols.items():
        coll = {"type": "Collection", "stac_version": "1.0.0", "id": cid, "description": f"fixture {cid}",
                "license": "proprietary", "extent": {"spatial": {"bbox": [[14.0, 48.0, 15.0, 49.0]]},
                                                     "temporal": {"interval": [["2021-01-01T00:00:00Z", None]]}},
                "links": [_link("root", "../catalog.json"), _link("parent", "../catalog.json")]
                + [_link("item", f"./{i}/{i}.json", "application/geo+json") for i in ids]}
        (root / cid / "collection.json").write_text(json.dumps(coll, indent=1))
    cat = {"type": "Catalog", "stac_version": "1.0.0", "id": "fixture-scenes", "description": "rsir STAC fixture",
           "links": [_link("root", "./catalog.json")] + [_link("child", f"./{c}/collection.json") for c in cols]}
    (root / "catalog.json").write_text(json.dumps(cat, indent=1))
    return root / "catalog.json"


def write_patches(root: Path) -> Path:
    """A STAC 1.1 ItemCollection of 4 whole 12 x 12 Sentinel-2 patches with labels and splits."""
    feats = []
    for k, (pid, labels, split, x0, when) in enumerate(PATCHES):
        d = root / "patches" / pid
        assets = {}
        for b, _key, common, gsd, um in S2:
            write_cog(d / f"{b}.tif", band_array(10 + k, b, 12, 12), x0, 5300000.0, gsd)
            assets[b] = {"href": f"patches/{pid}/{b}.tif", "type": "image/tiff; application=geotiff",
                         "roles": ["data"], "bands": [{"name": b, "eo:common_name": common,
                                                       "eo:center_wavelength": um}]}
        bbox, geom = _bbox_geom(x0, 5300000.0, 120, 120)
        feats.append({"type": "Feature", "stac_version": "1.1.0", "id": pid,
                      "stac_extensions": ["https://stac-extensions.github.io/eo/v2.0.0/schema.json"],
                      "geometry": geom, "bbox": bbox,
                      "properties": {"datetime": when, "rsir:labels": labels, "rsir:split": split,
                                     "platform": "sentinel-2a"},
                      "links": [], "assets": assets})
    path = root / "patches.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}, indent=1))
    return path


def write_all(root: Path) -> dict[str, Path]:
    return {"scenes": write_scenes(root / "scenes"), "patches": write_patches(root)}


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "stac-fixture")
    for k, v in write_all(out).items():
        print(k, v)
