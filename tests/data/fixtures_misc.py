"""Write tiny fixture files in the real layouts of SSL4EO-S12, Major-TOM, caption corpora and bitemporal pairs.

Pixel values are deterministic functions of the position so that tests can recompute them by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.transform import Affine

S2A_FILES = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]
S2C_FILES = S2A_FILES[:10] + ["B10"] + S2A_FILES[10:]
GSD = {"B1": 60, "B9": 60, "B10": 60, "B5": 20, "B6": 20, "B7": 20, "B8A": 20, "B11": 20, "B12": 20}


def write_geotiff(path: Path, a: np.ndarray, transform: Affine, crs: str) -> None:
    """A single-band GeoTIFF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=a.shape[0], width=a.shape[1], count=1, dtype=a.dtype,
                       crs=crs, transform=transform) as ds:
        ds.write(a, 1)


def band_value(band: str, season: int) -> int:
    """The constant DN of an SSL4EO fixture band: 100 * season + its position in S2C_FILES + 1."""
    return 100 * season + S2C_FILES.index(band) + 1


def write_ssl4eo(root: Path, site: str = "0000042", linear_s1: bool = False) -> Path:
    """SSL4EO-S12 layout: s1/s2a/s2c/<site>/<timestamp>/<band>.tif + metadata.json, 264 px at 10 m in EPSG:4326.

    Seasons are written out of order on disk (names sort differently from dates only through the folder name,
    which carries the date); season k of s2a holds band_value(band, k) everywhere, S1 VV = -10 - k, VH = -20 - k
    (dB) or their linear powers when ``linear_s1``.
    """
    x0, y0, px = 10.0, 50.0, 1e-4
    s2_dates = ["20210315T101021_20210315T101022_T32UPU", "20200620T101031_20200620T101032_T32UPU"]
    s2c_dates = ["20210318T101021_20210318T101022_T32UPU", "20200625T101031_20200625T101032_T32UPU"]
    s1_dates = ["S1A_IW_GRDH_1SDV_20210312T170000_20210312T170025_036000_043000_AAAA",
                "S1B_IW_GRDH_1SDV_20200618T170000_20200618T170025_022000_029000_BBBB"]
    for folder, names, files in (("s2a", s2_dates, S2A_FILES), ("s2c", s2c_dates, S2C_FILES)):
        for i, name in enumerate(names):
            season = 1 - i  # the 2021 folder is season 1, the 2020 one season 0
            d = root / folder / site / name
            for f in files:
                g = GSD.get(f, 10)
                n = 264 * 10 // g
                tr = Affine(px * g / 10, 0, x0, 0, -px * g / 10, y0)
                write_geotiff(d / f"{f}.tif", np.full((n, n), band_value(f, season), np.uint16), tr, "EPSG:4326")
            (d / "metadata.json").write_text(json.dumps({"CLOUDY_PIXEL_PERCENTAGE": 1.5 + season,
                                                         "MGRS_TILE": "32UPU"}))
    for i, name in enumerate(s1_dates):
        season = 1 - i
        d = root / "s1" / site / name
        tr = Affine(px, 0, x0, 0, -px, y0)
        for pol, db in (("VV", -10.0 - season), ("VH", -20.0 - season)):
            v = 10 ** (db / 10) if linear_s1 else db
            write_geotiff(d / f"{pol}.tif", np.full((264, 264), v, np.float32), tr, "EPSG:4326")
        (d / "metadata.json").write_text(json.dumps({"orbitProperties_pass": "ASCENDING"}))
    return root


def write_majortom_cell(root: Path, cell: str = "12U_345R", size: int = 270, cloud_rows: int = 30) -> Path:
    """One Major-TOM S2L2A cell of ``size`` px at 10 m in EPSG:32632 (origin x=500000, y=5400000).

    10 m band value at (row, col) = row * 1000 + col (uint16 via modulo), 20 m / 60 m bands hold their own
    row * 1000 + col; the cloud mask is 1 on the first ``cloud_rows`` rows and 0 elsewhere.
    """
    product = "S2A_MSIL2A_20210704T103031_N0301_R108_T32UPU_20210704T135603"
    d = root / "S2L2A" / cell.split("_")[0] / cell / product
    for b, g in (("B01", 60), ("B02", 10), ("B03", 10), ("B04", 10), ("B05", 20), ("B06", 20), ("B07", 20),
                 ("B08", 10), ("B8A", 20), ("B09", 60), ("B11", 20), ("B12", 20)):
        n = size * 10 // g
        r, c = np.mgrid[0:n, 0:n]
        write_geotiff(d / f"{b}.tif", ((r * 1000 + c) % 65536).astype(np.uint16),
                      Affine(g, 0, 500000, 0, -g, 5400000), "EPSG:32632")
    mask = np.zeros((size, size), np.uint8)
    mask[:cloud_rows] = 1
    write_geotiff(d / "cloud_mask.tif", mask, Affine(10, 0, 500000, 0, -10, 5400000), "EPSG:32632")
    return root


def rgb_picture(h: int, w: int, seed: int) -> np.ndarray:
    """A deterministic HxWx3 uint8 picture."""
    r, c = np.mgrid[0:h, 0:w]
    return np.stack([(r + seed) % 256, (c + 2 * seed) % 256, (r + c + 3 * seed) % 256], -1).astype(np.uint8)


def write_picture(path: Path, a: np.ndarray) -> None:
    """Save an array as png/jpg/tif by the suffix (PIL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def write_dataset_json(path: Path) -> Path:
    """A dataset_*.json (RSICD / UCM style) with 3 images: 2 train, 1 val; airport_1 has a blank caption."""
    images = [
        {"filename": "airport_1.jpg", "imgid": 0, "split": "train", "sentids": [0, 1],
         "sentences": [{"raw": "many planes are parked .", "tokens": ["many", "planes"], "imgid": 0, "sentid": 0},
                       {"raw": "  ", "tokens": [], "imgid": 0, "sentid": 1}]},
        {"filename": "beach_7.jpg", "imgid": 1, "split": "val", "sentids": [2],
         "sentences": [{"raw": "waves hit the sand .", "tokens": ["waves"], "imgid": 1, "sentid": 2}]},
        {"filename": "airport_2.jpg", "imgid": 2, "split": "train", "sentids": [3],
         "sentences": [{"raw": "a runway .", "tokens": ["a", "runway"], "imgid": 2, "sentid": 3}]},
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "dataset": "rsicd"}))
    return path


def write_coco_json(path: Path, names: list[str], first_id: int = 1) -> Path:
    """A COCO caption JSON (RemoteSensingCaptions style): each image with two captions."""
    images = [{"license": 1, "file_name": n, "id": first_id + i, "height": 256, "width": 256} for i, n in
              enumerate(names)]
    anns = [{"image_id": first_id + i, "id": 2 * i + k, "caption": f"caption {k} of {n}"} for i, n in
            enumerate(names) for k in range(2)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"info": {}, "images": images, "licenses": [], "annotations": anns}))
    return path


def write_precomp(folder: Path) -> Path:
    """AMFMN precomp: train lists 2 images once (10 captions, i // 5), test repeats its 1 name per caption."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_filename.txt").write_text("1.tif\n2.tif\n")
    (folder / "train_caps.txt").write_text("".join(f"train cap {i}\n" for i in range(10)))
    (folder / "test_filename.txt").write_text("7.tif\n" * 5)
    (folder / "test_caps.txt").write_text("".join(f"test cap {i}\n" for i in range(5)))
    return folder


def write_levir_cd(root: Path, names: list[str], size: int = 32, with_list: bool = True) -> Path:
    """LEVIR-CD layout A/ B/ label/ PNGs (+ list/train.txt with the first name); label: 255 on the top quarter."""
    for k, n in enumerate(names):
        write_picture(root / "A" / n, rgb_picture(size, size, k))
        write_picture(root / "B" / n, rgb_picture(size, size, k + 50))
        lab = np.zeros((size, size), np.uint8)
        lab[: size // 4] = 255
        write_picture(root / "label" / n, lab)
    if with_list:
        (root / "list").mkdir(parents=True, exist_ok=True)
        (root / "list" / "train.txt").write_text(names[0] + "\n")
        (root / "list" / "demo.txt").write_text("\n".join(names[:2]) + "\n")
    return root


def write_levir_cc(root: Path, with_pair: bool = True) -> Path:
    """LEVIR-CC: levir_cc_captions.json, train/val/test.txt, vocab.json and one picture pair (example_pair/)."""
    caps = {
        "train_000001.png": {"split": "train", "sentences": ["there is no difference"] * 5},
        "train_000002.png": {"split": "train", "sentences": [f"a house appears {i}" for i in range(5)]},
        "val_000001.png": {"split": "val", "sentences": ["a road is built"] * 5},
        "test_000001.png": {"split": "test", "sentences": ["trees are removed"] * 5},
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "levir_cc_captions.json").write_text(json.dumps(caps))
    (root / "train.txt").write_text("train_000001.png\ntrain_000002.png\n")
    (root / "val.txt").write_text("val_000001.png\n")
    (root / "test.txt").write_text("test_000001.png\n")
    (root / "vocab.json").write_text(json.dumps({"<NULL>": 0, "<UNK>": 1, "<START>": 2, "<END>": 3, "a": 4}))
    if with_pair:
        write_picture(root / "example_pair" / "A" / "train_000002.png", rgb_picture(256, 256, 1))
        write_picture(root / "example_pair" / "B" / "train_000002.png", rgb_picture(256, 256, 2))
    return root
