"""EuroSAT (Helber et al., JSTARS 2019): 27,000 Sentinel-2 L1C patches of 64x64 px in 10 class folders.

MS layout: ``<Class>/<Class>_<n>.tif``, 13-band uint16 GeoTIFFs (all bands resampled to 10 m). The band order
in the files is B01..B12 followed by B8A, not the spectral order the paper lists: the 13th band tracks B08
(NIR) and the 10th is the near-empty cirrus band B10 (phelber/EuroSAT issue 7, fixed in torchgeo PR 2480;
it is also what the real sample files show). The archive stores the bands under their names in spectral
order. The RGB layout (``<Class>/<Class>_<n>.jpg``) is read as modality ``rgb`` when no .tif files are found.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rsir.data.bands import RGB_BANDS, S2_L1C, ModalitySpec
from rsir.data.formats import Arrays, Source, SourceItem
from rsir.data.nomenclature import Nomenclature
from rsir.data.options import ReaderOption
from rsir.errors import FormatError, ItemError

EUROSAT_CLASSES: tuple[str, ...] = (
    "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
    "Residential", "River", "SeaLake",
)
EUROSAT10 = Nomenclature("eurosat-10", EUROSAT_CLASSES)
# Band order inside the EuroSAT MS GeoTIFFs (B8A is the 13th band).
FILE_BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12",
                               "B8A")
MS_BANDS: tuple[str, ...] = tuple(b.name for b in S2_L1C)
SIZE = 64


def ms_spec(size: int = SIZE) -> ModalitySpec:
    """EuroSAT MS: 13 Sentinel-2 L1C bands, all at 10 m on a 64x64 grid."""
    return ModalitySpec("ms", list(MS_BANDS), {b: (size, size) for b in MS_BANDS}, "uint16", "reflectance*10000",
                        (size, size), "Sentinel-2 L1C top-of-atmosphere reflectance, 13 bands at 10 m",
                        extra={"file_band_order": list(FILE_BANDS)})


def rgb_spec(size: int = SIZE) -> ModalitySpec:
    """EuroSAT RGB: 8-bit true colour."""
    return ModalitySpec("rgb", list(RGB_BANDS), {b: (size, size) for b in RGB_BANDS}, "uint8", "8-bit",
                        (size, size), "Sentinel-2 true colour (8-bit)")


def _class_dirs(root: Path) -> list[Path]:
    """The class folders, found at root or (for the zip's nested layout) a few levels below."""
    level = [root]
    for _ in range(6):
        hits = [d for d in level if d.name in EUROSAT_CLASSES]
        if hits:
            return sorted(hits, key=lambda d: d.name)
        level = [c for d in level for c in sorted(d.iterdir()) if c.is_dir()]
        if not level:
            break
    raise FormatError(f"{root}: no EuroSAT class folders ({', '.join(EUROSAT_CLASSES)})")


def _read_split_lists(folder: Path) -> dict[str, str]:
    """{file stem: split} from eurosat-train/val/test.txt or train/val/test.txt/.csv (one file name per line)."""
    out: dict[str, str] = {}
    for split, names in (("train", ("train",)), ("validation", ("val", "validation")), ("test", ("test",))):
        for n in names:
            for p in (folder / f"eurosat-{n}.txt", folder / f"{n}.txt", folder / f"{n}.csv"):
                if p.exists():
                    for line in p.read_text().splitlines():
                        name = line.split(",")[0].strip()
                        if name:
                            out[Path(name).stem] = split
    if not out:
        raise FormatError(f"{folder}: no split lists (train.txt / val.txt / test.txt) found (--option splits=DIR)")
    return out


OPTIONS = (
    ReaderOption("splits", "dir", "folder with the split lists (eurosat-train.txt / train.txt / train.csv, val, "
                 "test: one file name per line); default: no splits"),
)


def read_eurosat(root: Path, options: dict[str, Any]) -> Source:
    """Items of EuroSAT MS (13-band GeoTIFFs) or, when it holds only .jpg files, EuroSAT RGB; single-label."""
    from rsir.data.tiffio import failing, read_geo, read_raster

    files: list[tuple[str, Path]] = []
    for d in _class_dirs(root):
        files.extend((d.name, p) for p in sorted(d.iterdir()) if p.suffix.lower() in (".tif", ".tiff"))
    rgb = not files
    if rgb:
        for d in _class_dirs(root):
            files.extend((d.name, p) for p in sorted(d.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise FormatError(f"{root}: class folders hold no .tif (EuroSAT MS) or .jpg (EuroSAT RGB) files")
    splits = _read_split_lists(Path(options["splits"])) if options.get("splits") else {}
    spec = rgb_spec() if rgb else ms_spec()

    def load_ms(item: str, path: Path) -> Arrays:
        r = read_raster(path, item, expect_bands=len(FILE_BANDS))
        if r.data.shape[1:] != (SIZE, SIZE):
            raise ItemError(item, f"{path.name} is {r.data.shape[1]}x{r.data.shape[2]} px, EuroSAT patches are "
                                  f"{SIZE}x{SIZE}", str(path))
        return {"ms": {b: r.data[i] for i, b in enumerate(FILE_BANDS)}}

    def load_rgb(item: str, path: Path) -> Arrays:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                a = np.asarray(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as e:
            raise ItemError(item, f"{path.name}: not a readable image ({e})", str(path)) from None
        if a.shape[:2] != (SIZE, SIZE):
            raise ItemError(item, f"{path.name} is {a.shape[0]}x{a.shape[1]} px, EuroSAT patches are {SIZE}x{SIZE}",
                            str(path))
        return {"rgb": {b: a[:, :, i] for i, b in enumerate(RGB_BANDS)}}

    def items() -> Iterator[SourceItem]:
        for cls, path in files:
            item = path.stem
            m: dict[str, Any] = {"labels": [cls], "split": splits.get(item, ""), "source": str(path)}
            if not rgb:
                try:
                    m.update(read_geo(path, item).meta())
                except ItemError as e:
                    # a corrupt file fails at load, where ingest reports it (or skips it with --skip-bad)
                    yield SourceItem(item, m, failing(e))
                    continue
                yield SourceItem(item, m, lambda item=item, path=path: load_ms(item, path))  # type: ignore[misc]
            else:
                yield SourceItem(item, m, lambda item=item, path=path: load_rgb(item, path))  # type: ignore[misc]

    info = {"layout": "EuroSAT RGB" if rgb else "EuroSAT MS", "band_order_in_files": list(FILE_BANDS)}
    return Source("eurosat", [spec], EUROSAT10, items(), len(files), info=info)
