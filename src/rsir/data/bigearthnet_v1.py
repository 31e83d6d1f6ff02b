"""BigEarthNet v1.0 (Sumbul et al., IGARSS 2019) and BigEarthNet-S1 v1.0 (BigEarthNet-MM, GRSM 2021) folders.

Layout: one folder per patch; an S2 folder holds ``<patch>_B01.tif`` ... ``<patch>_B12.tif`` (12 L2A bands at
120/60/20 px) and ``<patch>_labels_metadata.json`` (labels in the 43-class CLC level-3 nomenclature,
coordinates ulx/uly/lrx/lry, projection, tile_source, acquisition_date); an S1 folder holds ``<patch>_VV.tif``,
``<patch>_VH.tif`` and a labels_metadata.json with ``corresponding_s2_patch``. Labels are converted to the
19-class nomenclature with the conversion table published with BigEarthNet-MM (``label_indices.json``);
the 43-class classes that the 19-class scheme leaves out are dropped, and the original labels are kept in the
catalog column ``labels_43``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rsir.data.bands import ModalitySpec, s1_spec, s2_spec
from rsir.data.formats import Arrays, Source, SourceItem
from rsir.data.nomenclature import BEN19
from rsir.errors import FormatError, ItemError

# The 43 CLC level-3 class names of BigEarthNet v1.0 in their published order (label_indices.json,
# "original_labels": name -> index 0..42).
BIGEARTHNET_43: tuple[str, ...] = (
    "Continuous urban fabric", "Discontinuous urban fabric", "Industrial or commercial units",
    "Road and rail networks and associated land", "Port areas", "Airports", "Mineral extraction sites",
    "Dump sites", "Construction sites", "Green urban areas", "Sport and leisure facilities",
    "Non-irrigated arable land", "Permanently irrigated land", "Rice fields", "Vineyards",
    "Fruit trees and berry plantations", "Olive groves", "Pastures", "Annual crops associated with permanent crops",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest", "Natural grassland",
    "Moors and heathland", "Sclerophyllous vegetation", "Transitional woodland/shrub", "Beaches, dunes, sands",
    "Bare rock", "Sparsely vegetated areas", "Burnt areas", "Inland marshes", "Peatbogs", "Salt marshes",
    "Salines", "Intertidal flats", "Water courses", "Water bodies", "Coastal lagoons", "Estuaries",
    "Sea and ocean",
)
# "label_conversion": entry i lists the 43-class indices merged into 19-class i. Indices 3-10 (roads, ports,
# airports, mines, dumps, construction, green urban, sport), 30 (bare rock), 32 (burnt areas) and
# 37 (intertidal flats) appear nowhere: those classes are dropped.
LABEL_CONVERSION: tuple[tuple[int, ...], ...] = (
    (0, 1), (2,), (11, 12, 13), (14, 15, 16, 18), (17,), (19,), (20,), (21,), (22,), (23,), (24,), (25, 31),
    (26, 27), (28,), (29,), (33, 34), (35, 36), (38, 39), (40, 41, 42),
)
CLC43_TO_19: dict[str, str] = {
    BIGEARTHNET_43[old]: BEN19.classes[new] for new, olds in enumerate(LABEL_CONVERSION) for old in olds
}
S2_BANDS_V1 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
_TILE = re.compile(r"_T(\d{2}[A-Z]{3})_")


def convert_labels(labels_43: list[str], item: str = "", path: str | None = None) -> list[str]:
    """19-class labels (in nomenclature order) of a list of 43-class labels; unknown names raise ItemError."""
    out: set[str] = set()
    for lab in labels_43:
        if lab not in BIGEARTHNET_43:
            raise ItemError(item, f"label {lab!r} is not one of the 43 BigEarthNet v1 classes", path)
        if lab in CLC43_TO_19:
            out.add(CLC43_TO_19[lab])
    return [c for c in BEN19.classes if c in out]


def _patch_folders(root: Path, max_depth: int = 2) -> list[Path]:
    """Folders <name>/ holding <name>_labels_metadata.json, at most ``max_depth`` levels below root."""
    found: list[Path] = []
    level = [root]
    for _ in range(max_depth + 1):
        nxt: list[Path] = []
        for d in level:
            if (d / f"{d.name}_labels_metadata.json").exists():
                found.append(d)
            else:
                nxt.extend(sorted(p for p in d.iterdir() if p.is_dir()))
        level = nxt
    return found


def _read_json(path: Path, item: str) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ItemError(item, f"{path.name}: unreadable labels metadata ({e})", str(path)) from None
    if not isinstance(d, dict) or "labels" not in d:
        raise ItemError(item, f"{path.name}: no 'labels' key", str(path))
    return d


def _read_splits(folder: Path) -> dict[str, str]:
    """{patch name: split} from train.csv / val.csv / test.csv (one patch name per line, first column)."""
    out: dict[str, str] = {}
    for fname, split in (("train.csv", "train"), ("val.csv", "validation"), ("validation.csv", "validation"),
                         ("test.csv", "test")):
        p = folder / fname
        if not p.exists():
            continue
        with open(p, newline="") as f:
            for row in csv.reader(f):
                if row and row[0].strip():
                    out[row[0].strip()] = split
    if not out:
        raise FormatError(f"{folder}: no train.csv / val.csv / test.csv with patch names (--option splits=DIR)")
    return out


def _iso(date: str) -> str:
    return date.strip().replace(" ", "T") if date else ""


def read_bigearthnet_v1(root: Path, options: dict[str, Any]) -> Source:
    """Items of BigEarthNet v1.0 S2 folders (paired with BigEarthNet-S1 v1.0 folders found under the same root).

    S1 folders are paired through their ``corresponding_s2_patch``; an S1 folder whose S2 patch is absent is an
    item of its own. ``--option splits=DIR`` reads train.csv / val.csv / test.csv; ``--option s1=false`` leaves
    S1 out.
    """
    from rsir.data.tiffio import read_band, read_geo

    with_s1 = str(options.get("s1", "true")).lower() not in ("0", "false", "no")
    size = int(options.get("size", 120))
    folders = _patch_folders(root)
    s2: dict[str, Path] = {}
    s1: dict[str, Path] = {}
    for d in folders:
        if (d / f"{d.name}_B02.tif").exists():
            s2[d.name] = d
        elif (d / f"{d.name}_VV.tif").exists():
            if with_s1:
                s1[d.name] = d
        else:
            raise FormatError(f"{d}: labels metadata but neither {d.name}_B02.tif nor {d.name}_VV.tif")
    if not s2 and not s1:
        raise FormatError(f"{root}: no BigEarthNet v1 patch folders (<patch>/<patch>_labels_metadata.json)")
    splits = _read_splits(Path(options["splits"])) if options.get("splits") else {}

    s1_json: dict[str, dict[str, Any]] = {n: _read_json(d / f"{n}_labels_metadata.json", n) for n, d in s1.items()}
    pair: dict[str, str] = {}
    for name, js in s1_json.items():
        partner = str(js.get("corresponding_s2_patch", ""))
        if partner in s2:
            pair[partner] = name
    lone_s1 = [n for n in s1 if n not in set(pair.values())]

    specs: list[ModalitySpec] = []
    if s2:
        specs.append(s2_spec(size))
    if s1:
        specs.append(s1_spec(size))

    def load_s1(name: str, item: str) -> Arrays:
        d = s1[name]
        return {"s1": {b: np.asarray(read_band(d / f"{name}_{b}.tif", item), dtype=np.float32) for b in ("VV", "VH")}}

    def load_s2(pid: str) -> Arrays:
        d = s2[pid]
        out: Arrays = {"s2": {b: read_band(d / f"{pid}_{b}.tif", pid) for b in S2_BANDS_V1}}
        if pid in pair:
            out.update(load_s1(pair[pid], pid))
        return out

    def meta_of(name: str, d: Path, js: dict[str, Any], first_band: str) -> dict[str, Any]:
        jpath = d / f"{name}_labels_metadata.json"
        labels_43 = [str(x) for x in js.get("labels", [])]
        m: dict[str, Any] = {"labels": convert_labels(labels_43, name, str(jpath)), "labels_43": labels_43,
                             "split": splits.get(name, ""), "source": str(d)}
        date = js.get("acquisition_date") or js.get("acquisition_time") or ""
        m["date"] = _iso(str(date))
        tm = _TILE.search(str(js.get("tile_source", "")))
        if tm:
            m["tile"] = tm.group(1)
        m.update(read_geo(d / f"{name}_{first_band}.tif", name).meta())
        return m

    def items() -> Iterator[SourceItem]:
        for pid, d in s2.items():
            js = _read_json(d / f"{pid}_labels_metadata.json", pid)
            m = meta_of(pid, d, js, "B02")
            if pid in pair:
                m["s1_id"] = pair[pid]
            yield SourceItem(pid, m, lambda pid=pid: load_s2(pid))  # type: ignore[misc]
        for name in lone_s1:
            js = s1_json[name]
            m = meta_of(name, s1[name], js, "VV")
            if not m["split"]:
                m["split"] = splits.get(str(js.get("corresponding_s2_patch", "")), "")
            yield SourceItem(name, m, lambda name=name: load_s1(name, name))  # type: ignore[misc]

    info = {"s2_patches": len(s2), "s1_patches": len(s1), "pairs": len(pair), "unpaired_s1_items": len(lone_s1),
            "label_conversion": "BigEarthNet-MM label_indices.json (43 -> 19 classes)"}
    return Source("bigearthnet-v1", specs, BEN19, items(), len(s2) + len(lone_s1), info=info)
