"""Write tiny fixture files in the real on-disk layouts with rasterio (georeferenced, UTM 33N / 35N).

Layouts: the reBEN raw GeoTIFF tree (BigEarthNet-S2 / BigEarthNet-S1 / Reference_Maps), BigEarthNet v1.0 S2 and
S1 patch folders with labels_metadata.json, EuroSAT MS class folders (13-band 64x64 uint16, B8A last), and a
generic folder of multi-band GeoTIFFs. Pixel values are deterministic functions of the band index so tests can
check that each band landed under its own name.

    python -m tests.data.fixtures_tiff OUTDIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from affine import Affine

S2_GSD = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10, "B8A": 20,
          "B09": 60, "B11": 20, "B12": 20}
S2_ORDER = list(S2_GSD)
UTM33N = "EPSG:32633"
# Corner of the real reBEN patch S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_75_43 (its GeoTIFF transform).
X0, Y0 = 390000.0, 5348400.0


def write_tif(path: Path, data: np.ndarray, crs: str | None = UTM33N, x0: float = X0, y0: float = Y0,
              gsd: float = 10.0, nodata: float | None = None) -> Path:
    """One GeoTIFF of a (bands, h, w) or (h, w) array with a north-up transform at (x0, y0)."""
    a = data[None] if data.ndim == 2 else data
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "height": a.shape[1], "width": a.shape[2], "count": a.shape[0],
               "dtype": str(a.dtype)}
    if crs is not None:
        profile.update(crs=crs, transform=Affine(gsd, 0.0, x0, 0.0, -gsd, y0))
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(a)
    return path


def s2_band_value(band: str, k: int) -> int:
    """The constant-plus-ramp base value of band ``band`` of patch k: 1000 * (band index + 1) + 10 * k."""
    return 1000 * (S2_ORDER.index(band) + 1) + 10 * k


def _s2_band(band: str, k: int, size: int = 120) -> np.ndarray:
    n = size * 10 // S2_GSD[band]
    return (s2_band_value(band, k) + np.arange(n * n).reshape(n, n) % 7).astype(np.uint16)


def _s1_band(pol: str, k: int, size: int = 120) -> np.ndarray:
    base = -10.0 if pol == "VV" else -17.0
    return (base - k + 0.01 * (np.arange(size * size).reshape(size, size) % 11)).astype(np.float32)


REBEN_S2 = ["S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_75_43", "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_75_44"]
REBEN_S1 = ["S1A_IW_GRDH_1SDV_20170613T165043_33UUP_75_43", "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_70_48"]
REBEN_LABELS = [["Coniferous forest", "Pastures"], ["Inland waters"]]


def write_reben_tiff(root: Path, with_metadata: bool = False) -> Path:
    """reBEN raw layout: 2 S2 patches, 2 S1 patches (one pairs with S2 #0 by tile/row/col), 1 reference map of
    S2 #0; with_metadata also writes a reBEN metadata.parquet pairing S2 #1 with S1 #1 through s1_name."""
    tile = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP"
    for k, pid in enumerate(REBEN_S2):
        for b in S2_ORDER:
            write_tif(root / "BigEarthNet-S2" / tile / pid / f"{pid}_{b}.tif", _s2_band(b, k),
                      x0=X0 + 1200 * k, gsd=S2_GSD[b])
    for k, name in enumerate(REBEN_S1):
        scene = name.rsplit("_", 3)[0]
        for pol in ("VV", "VH"):
            write_tif(root / "BigEarthNet-S1" / scene / name / f"{name}_{pol}.tif", _s1_band(pol, k),
                      x0=X0 + 1200 * k)
    refmap = np.full((120, 120), 312, np.uint16)
    refmap[:60] = 231
    pid = REBEN_S2[0]
    write_tif(root / "Reference_Maps" / tile / pid / f"{pid}_reference_map.tif", refmap, nodata=0)
    if with_metadata:
        pd.DataFrame({
            "patch_id": REBEN_S2, "labels": REBEN_LABELS, "split": ["train", "test"], "country": ["Austria"] * 2,
            "s1_name": [REBEN_S1[1], REBEN_S1[0]], "s2v1_name": ["S2A_MSIL2A_20170613T101031_75_43",
                                                                  "S2A_MSIL2A_20170613T101031_75_44"],
            "contains_seasonal_snow": [False, False], "contains_cloud_or_shadow": [False, False],
        }).to_parquet(root / "metadata.parquet")
    return root


V1_S2 = ["S2A_MSIL2A_20170613T101031_75_43", "S2B_MSIL2A_20180204T094159_2_60"]
V1_S1 = ["S1A_IW_GRDH_1SDV_20170613T165043_33UUP_75_43", "S1B_IW_GRDH_1SDV_20180204T165810_35VNJ_9_9"]
# 43-class labels as BigEarthNet v1 writes them. Patch 0 -> 19 classes: "Urban fabric" (from Discontinuous urban
# fabric), "Arable land" (Non-irrigated arable land); "Road and rail networks and associated land" is dropped.
# Patch 1 -> "Natural grassland and sparsely vegetated areas" (both 25 and 31), "Marine waters" (Sea and ocean);
# "Bare rock" is dropped.
V1_LABELS = [["Discontinuous urban fabric", "Non-irrigated arable land", "Road and rail networks and associated land"],
             ["Natural grassland", "Sparsely vegetated areas", "Bare rock", "Sea and ocean"]]
_PROJ = ('PROJCS["WGS 84 / UTM zone 33N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
         'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],'
         'PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",15],PARAMETER["scale_factor",0.9996],'
         'PARAMETER["false_easting",500000],PARAMETER["false_northing",0],UNIT["metre",1]]')


def write_bigearthnet_v1(root: Path) -> Path:
    """BigEarthNet-v1.0/<patch>/ (12 bands + labels_metadata.json) and BigEarthNet-S1-v1.0/<patch>/ (VV, VH +
    json with corresponding_s2_patch; S1 #0 pairs with S2 #0, S1 #1 names an S2 patch that is absent)."""
    for k, pid in enumerate(V1_S2):
        d = root / "BigEarthNet-v1.0" / pid
        for b in S2_ORDER:
            write_tif(d / f"{pid}_{b}.tif", _s2_band(b, k), x0=X0 + 1200 * k, gsd=S2_GSD[b])
        date = pid.split("_")[2]
        (d / f"{pid}_labels_metadata.json").write_text(json.dumps({
            "labels": V1_LABELS[k],
            "coordinates": {"ulx": X0 + 1200 * k, "uly": Y0, "lrx": X0 + 1200 * (k + 1), "lry": Y0 - 1200},
            "projection": _PROJ,
            "tile_source": f"S2A_MSIL1C_{date}_N0205_R022_T33UUP_{date}",
            "acquisition_date": f"{date[0:4]}-{date[4:6]}-{date[6:8]} {date[9:11]}:{date[11:13]}:{date[13:15]}",
        }))
    for k, name in enumerate(V1_S1):
        d = root / "BigEarthNet-S1-v1.0" / name
        for pol in ("VV", "VH"):
            write_tif(d / f"{name}_{pol}.tif", _s1_band(pol, k), x0=X0 + 1200 * k)
        (d / f"{name}_labels_metadata.json").write_text(json.dumps({
            "labels": V1_LABELS[k],
            "coordinates": {"ulx": X0, "uly": Y0, "lrx": X0 + 1200, "lry": Y0 - 1200},
            "projection": _PROJ,
            "corresponding_s2_patch": V1_S2[0] if k == 0 else "S2B_MSIL2A_20180204T094159_9_9",
            "scene_source": name.rsplit("_", 3)[0],
            "acquisition_time": "2017-06-13T16:50:43",
        }))
    return root


EUROSAT_FILES = [("AnnualCrop", 1), ("Pasture", 300), ("SeaLake", 3000)]
EUROSAT_FILE_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"]


def eurosat_value(file_band_index: int, k: int) -> int:
    """Pixel value of band number ``file_band_index`` (0-based, file order) of EuroSAT fixture k."""
    return 100 * (file_band_index + 1) + k


def write_eurosat(root: Path) -> Path:
    """EuroSAT MS: <Class>/<Class>_<n>.tif, 13 bands (file order B01..B12, B8A) uint16 64x64, UTM 35N."""
    for k, (cls, n) in enumerate(EUROSAT_FILES):
        a = np.stack([np.full((64, 64), eurosat_value(i, k), np.uint16) for i in range(13)])
        write_tif(root / cls / f"{cls}_{n}.tif", a, crs="EPSG:32635", x0=624602.0, y0=4877286.0)
    return root


def write_geotiff_folder(root: Path) -> Path:
    """Three 4-band uint16 32x32 GeoTIFFs (one in a subfolder) and a labels CSV."""
    for k, rel in enumerate(["a.tif", "b.tif", "sub/c.tiff"]):
        a = np.stack([np.full((32, 32), 10 * (i + 1) + k, np.uint16) for i in range(4)])
        write_tif(root / "img" / rel, a, x0=X0 + 320 * k)
    (root / "labels.csv").write_text("id,labels,split\na,forest;water,train\nb.tif,urban,test\nsub/c,forest,\n")
    return root


def write_all(out: Path) -> dict[str, Path]:
    """Every layout under out/ (reben-tiff, bigearthnet-v1, eurosat, geotiff)."""
    return {
        "reben-tiff": write_reben_tiff(out / "reben-tiff", with_metadata=True),
        "bigearthnet-v1": write_bigearthnet_v1(out / "bigearthnet-v1"),
        "eurosat": write_eurosat(out / "eurosat"),
        "geotiff": write_geotiff_folder(out / "geotiff"),
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m tests.data.fixtures_tiff OUTDIR", file=sys.stderr)
        sys.exit(2)
    for name, path in write_all(Path(sys.argv[1])).items():
        print(f"{name:16s} {path}")
