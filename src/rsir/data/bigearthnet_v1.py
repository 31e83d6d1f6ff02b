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
from rsir.data.options import ReaderOption
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


SEARCH_DEPTH = 2
_PROBE_DEPTH, _PROBE_DIRS = 8, 20000


def _patch_folders(root: Path, max_depth: int = SEARCH_DEPTH) -> list[Path]:
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


def _why_no_patches(root: Path) -> str:
    """The reason no patch folder was found: a deeper one (and where), a misnamed metadata file, or none at all."""
    level, seen = [(root, 0)], 0
    while level and seen < _PROBE_DIRS:
        nxt = []
        for d, depth in level:
            seen += 1
            try:
                entries = sorted(d.iterdir())
            except OSError:
                continue
            for p in entries:
                if p.name.endswith("_labels_metadata.json") and p.is_file():
                    if p.name == f"{d.name}_labels_metadata.json":
                        return (f"patch folders are nested deeper than {SEARCH_DEPTH} levels: {d} is {depth} levels "
                                f"down; point the source at {d.parent}")
                    return (f"{p} does not match its folder name {d.name!r} (a patch folder <patch>/ holds "
                            f"<patch>_labels_metadata.json)")
                if p.is_dir() and depth < _PROBE_DEPTH:
                    nxt.append((p, depth + 1))
        level = nxt
    return "no <patch>_labels_metadata.json file at all below it"


def _read_json(path: Path, item: str) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ItemError(item, f"{path.name}: unreadable labels metadata ({e})", str(path)) from None
    if not isinstance(d, dict) or "labels" not in d:
        raise ItemError(item, f"{path.name}: no 'labels' key", str(path))
    return d


SPLIT_FILES = (("train.csv", "train"), ("val.csv", "validation"), ("validation.csv", "validation"),
               ("test.csv", "test"))


def _read_splits(folder: Path) -> dict[str, str]:
    """{patch name: split} from train.csv / val.csv / test.csv (one patch name per line, first column)."""
    out: dict[str, str] = {}
    for fname, split in SPLIT_FILES:
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


def _find_split_folder(root: Path) -> Path | None:
    """A folder with the split lists beside the data: the source, its parent, or a splits/ folder in either."""
    for d in (root, root / "splits", root.parent, root.parent / "splits"):
        if any((d / f).is_file() for f, _ in SPLIT_FILES):
            return d
    return None


def _s1_siblings(root: Path) -> list[Path]:
    """Folders beside ``root`` that hold BigEarthNet-S1 patch folders (the S1 tarball unpacks next to the S2 one)."""
    out: list[Path] = []
    try:
        siblings = sorted(p for p in root.parent.iterdir() if p.is_dir() and p != root)
    except OSError:
        return out
    for sib in siblings:
        if "s1" not in sib.name.lower():
            continue
        try:
            first = next((d for d in sib.iterdir() if d.is_dir()), None)
        except OSError:
            continue
        if first is not None and ((first / f"{first.name}_VV.tif").exists() or
                                  any((g / f"{g.name}_VV.tif").exists() for g in first.iterdir() if g.is_dir())):
            out.append(sib)
    return out


def _iso(date: str) -> str:
    return date.strip().replace(" ", "T") if date else ""


OPTIONS = (
    ReaderOption("splits", "dir", "folder with train.csv, val.csv and test.csv (patch names; published with "
                 "BigEarthNet's bigearthnet-models code); default: found in the source, beside it or in a splits/ "
                 "folder there"),
    ReaderOption("s1", "bool", "pair Sentinel-2 patches with BigEarthNet-S1 patches", True),
    ReaderOption("s1-dir", "dir", "the BigEarthNet-S1-v1.0 folder; default: S1 patch folders under the source, else "
                 "a sibling folder named like BigEarthNet-S1-v1.0"),
    ReaderOption("size", "int", "patch size in pixels at 10 m", 120, minimum=6),
)


def read_bigearthnet_v1(root: Path, options: dict[str, Any]) -> Source:
    """Items of BigEarthNet v1.0 S2 folders, paired with BigEarthNet-S1 v1.0 folders.

    Patch folders are looked for up to two levels below the source. S1 folders are those under the source,
    else those of ``--option s1-dir``, else those of a sibling folder of the source whose name contains "S1"
    (the official tarballs unpack to BigEarthNet-v1.0/ and BigEarthNet-S1-v1.0/ side by side); when none is
    found the archive holds Sentinel-2 only and a warning says so. S1 folders are paired through their
    ``corresponding_s2_patch``; an S1 folder whose S2 patch is absent is an item of its own. Split lists come
    from ``--option splits=DIR`` or are found beside the data; without them every split is empty (warned).
    """
    from rsir.data.tiffio import read_band, read_geo

    with_s1 = bool(options["s1"])
    size = int(options["size"])
    notes: list[str] = []
    warnings: list[str] = []
    folders = _patch_folders(root)
    s2: dict[str, Path] = {}
    s1: dict[str, Path] = {}

    def sort_folders(found: list[Path]) -> None:
        for d in found:
            if (d / f"{d.name}_B02.tif").exists():
                s2[d.name] = d
            elif (d / f"{d.name}_VV.tif").exists():
                if with_s1:
                    s1[d.name] = d
            else:
                raise FormatError(f"{d}: labels metadata but neither {d.name}_B02.tif nor {d.name}_VV.tif")

    sort_folders(folders)
    if not s2 and not s1:
        raise FormatError(f"{root}: no BigEarthNet v1 patch folders (<patch>/<patch>_labels_metadata.json) within "
                          f"{SEARCH_DEPTH} levels: {_why_no_patches(root)}")
    if with_s1 and options.get("s1-dir"):
        before = len(s1)
        sort_folders(_patch_folders(Path(options["s1-dir"])))
        if len(s1) == before:
            raise FormatError(f"--option s1-dir={options['s1-dir']}: no BigEarthNet-S1 patch folders "
                              f"(<patch>/<patch>_VV.tif) within {SEARCH_DEPTH} levels")
    elif with_s1 and s2 and not s1:
        sibs = _s1_siblings(root)
        if len(sibs) == 1:
            sort_folders(_patch_folders(sibs[0]))
            notes.append(f"Sentinel-1 patches read from {sibs[0]}, the folder beside the source "
                         f"(--option s1=false leaves them out)")
        elif len(sibs) > 1:
            raise FormatError(f"{root}: several Sentinel-1 folders beside it ({', '.join(p.name for p in sibs)}); "
                              f"choose one with --option s1-dir=DIR, or --option s1=false")
        else:
            warnings.append(f"no BigEarthNet-S1 patch folders under {root} or beside it: the archive holds "
                            f"Sentinel-2 only. Unpack BigEarthNet-S1-v1.0.tar.gz next to {root.name}/ or pass "
                            f"--option s1-dir=DIR; --option s1=false says Sentinel-2 only is meant")
    split_dir = Path(options["splits"]) if options.get("splits") else _find_split_folder(root)
    splits = _read_splits(split_dir) if split_dir is not None else {}
    if split_dir is None:
        warnings.append("no split lists (train.csv, val.csv, test.csv) given or found beside the data: every item "
                        "has an empty split, so training uses all items and `rsir eval` needs --split all; "
                        "pass --option splits=DIR")
    elif not options.get("splits"):
        notes.append(f"split lists read from {split_dir}")
    if splits and not any(n in splits for n in s2):
        warnings.append(f"the split lists in {split_dir} name none of the {len(s2)} Sentinel-2 patches found: "
                        f"every item has an empty split")

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
            "label_conversion": "BigEarthNet-MM label_indices.json (43 -> 19 classes)",
            "splits_from": str(split_dir) if split_dir is not None else None}
    return Source("bigearthnet-v1", specs, BEN19, items(), len(s2) + len(lone_s1), info=info, notes=notes,
                  warnings=warnings)
