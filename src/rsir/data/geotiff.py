"""A folder of multi-band GeoTIFFs (any sensor): every *.tif / *.tiff below the root is one item.

Options: ``bands=B02,B03,B04`` names the bands in file order (default: the band descriptions of the first file
when all are set, else B1..Bn); every file must have that many bands. ``size=N`` resamples every image to NxN
(bilinear; integer data is rounded back to its type); without it all images must share the first one's size.
``labels=FILE`` is a CSV with columns id,labels (labels separated by ';', id = path relative to the root without
suffix, or the file name, or its stem) and an optional split column; the nomenclature is the sorted set of labels
seen (``nomenclature=NAME`` names it). The item id is the path relative to the root without its suffix.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rsir.data.bands import ModalitySpec, to_grid
from rsir.data.formats import Arrays, Source, SourceItem
from rsir.data.nomenclature import Nomenclature, nomenclature_from_labels
from rsir.data.options import ReaderOption
from rsir.errors import FormatError, ItemError, RsirError

SUFFIXES = (".tif", ".tiff")


def find_tiffs(root: Path) -> list[Path]:
    """Every .tif / .tiff file below root (or root itself), sorted by relative path."""
    if root.is_file():
        return [root]
    return sorted((p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()),
                  key=lambda p: p.relative_to(root).as_posix())


def _read_labels(path: Path) -> dict[str, tuple[list[str], str]]:
    """{id: (labels, split)} from a CSV with columns id, labels[, split]."""
    if not path.exists():
        raise FormatError(f"{path}: labels file not found (--option labels=FILE)")
    out: dict[str, tuple[list[str], str]] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        if not {"id", "labels"} <= cols:
            raise FormatError(f"{path}: expected CSV columns id,labels (found {sorted(cols)})")
        for row in reader:
            labs = [s.strip() for s in (row["labels"] or "").split(";") if s.strip()]
            out[str(row["id"]).strip()] = (labs, (row.get("split") or "").strip())
    return out


DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
OPTIONS = (
    ReaderOption("bands", "list", "band names in file order; default: the first file's band descriptions, else "
                 "B1..Bn"),
    ReaderOption("size", "int", "resample every image to NxN (bilinear); default: all must share the first "
                 "image's size", minimum=1),
    ReaderOption("labels", "file", "CSV with columns id,labels[,split] (labels separated by ;)"),
    ReaderOption("nomenclature", "str", "name of the label set"),
    ReaderOption("modality", "str", "modality name in the archive", "image"),
    ReaderOption("unit", "str", "unit of the pixel values (reflectance*10000 lets float reflectances be scaled)"),
    ReaderOption("dtype", "choice", "dtype the archive stores; default: the first file's (other files are "
                 "converted exactly or refused)", choices=DTYPES),
)


def read_geotiff_folder(root: Path, options: dict[str, Any]) -> Source:
    """Items of a folder of multi-band GeoTIFFs (one modality ``image``), labels from an optional CSV."""
    from rsir.data.tiffio import failing, read_geo, read_raster

    files = find_tiffs(root)
    if not files:
        raise FormatError(f"{root}: no .tif / .tiff files found")
    base = root if root.is_dir() else root.parent
    first = None
    for p in files:  # the first readable file defines band count, dtype and size
        try:
            first = read_raster(p, check_finite=False)
            break
        except ItemError:
            continue
    if first is None:
        raise FormatError(f"{root}: none of the {len(files)} .tif files is a readable GeoTIFF")
    names = list(options["bands"]) if options.get("bands") else None
    if names is None:
        desc = [d for d in first.descriptions if d]
        names = desc if len(desc) == first.data.shape[0] and len(set(desc)) == len(desc) else \
            [f"B{i + 1}" for i in range(first.data.shape[0])]
    if len(set(names)) != len(names):
        raise RsirError(f"--option bands repeats a band name: {','.join(names)}")
    size = int(options["size"]) if options.get("size") else None
    shape = (size, size) if size else (int(first.data.shape[1]), int(first.data.shape[2]))
    dtype = str(options.get("dtype") or first.dtype)
    spec = ModalitySpec(str(options.get("modality") or "image"), names, {b: shape for b in names}, dtype,
                        str(options.get("unit") or ""), shape, f"GeoTIFF bands {','.join(names)}")

    labels_by_id = _read_labels(Path(options["labels"])) if options.get("labels") else {}
    nomen = nomenclature_from_labels(str(options.get("nomenclature") or "labels"),
                                     (v[0] for v in labels_by_id.values())) \
        if labels_by_id else Nomenclature(str(options.get("nomenclature") or "unlabelled"), ())

    def item_id(p: Path) -> str:
        return p.relative_to(base).with_suffix("").as_posix()

    def lookup(p: Path, iid: str) -> tuple[list[str], str] | None:
        for key in (iid, p.name, p.stem):
            if key in labels_by_id:
                return labels_by_id[key]
        return None

    def load(iid: str, p: Path) -> Arrays:
        r = read_raster(p, iid, expect_bands=len(names), band_names=names if options.get("bands") else None)
        h, w = int(r.data.shape[1]), int(r.data.shape[2])
        if size is None:
            if (h, w) != shape:
                raise ItemError(iid, f"{p.name} is {h}x{w} px, the first image is {shape[0]}x{shape[1]}; "
                                     f"pass --option size=N to resample all images to NxN", str(p))
            return {spec.name: {b: r.data[i] for i, b in enumerate(names)}}
        if (h, w) == shape:
            return {spec.name: {b: r.data[i] for i, b in enumerate(names)}}
        grid = to_grid({b: r.data[i].astype(np.float32) for i, b in enumerate(names)}, names, shape)
        # back to the file's dtype (bilinear weights sum to one, so the values stay within the file's range);
        # the writer then converts to the archive's dtype or refuses, like any other band
        file_dtype = r.data.dtype
        if file_dtype.kind in "iu":
            info = np.iinfo(file_dtype)
            grid = np.clip(np.rint(grid), info.min, info.max)
        return {spec.name: {b: grid[i].astype(file_dtype) for i, b in enumerate(names)}}

    def items() -> Iterator[SourceItem]:
        for p in files:
            iid = item_id(p)
            m: dict[str, Any] = {"source": str(p)}
            lab = lookup(p, iid)
            if lab is not None:
                m["labels"], m["split"] = lab[0], lab[1]
            try:
                m.update(read_geo(p, iid).meta())
            except ItemError as e:
                yield SourceItem(iid, m, failing(e))
                continue
            yield SourceItem(iid, m, lambda iid=iid, p=p: load(iid, p))  # type: ignore[misc]

    info = {"files": len(files), "bands": names, "resampled_to": list(shape) if size else None,
            "labelled": sum(1 for p in files if lookup(p, item_id(p)) is not None) if labels_by_id else 0}
    return Source("geotiff", [spec], nomen, items(), len(files), info=info)
