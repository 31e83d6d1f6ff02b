"""reBEN (BigEarthNet v2.0): the DL-optimised LMDB + metadata.parquet layout.

LMDB: key = Sentinel-2 patch_id or Sentinel-1 name, value = safetensors bytes of {band: array}; S2 L2A bands at
native resolution (uint16, reflectance * 10000), S1 VV/VH 120x120 float32 in dB. metadata.parquet: patch_id,
labels (19-class names), split, country, s1_name, s2v1_name and snow/cloud flags; the patches with seasonal snow
or cloud/shadow are listed in ``metadata_for_patches_with_snow_cloud_or_shadow.parquet`` beside it.
(Clasen et al., "reBEN: Refined BigEarthNet Dataset for Remote Sensing Image Analysis", IGARSS 2025.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
import pandas as pd

from rsir.data.archive import decode_value
from rsir.data.bands import ModalitySpec, s1_spec, s2_spec
from rsir.data.formats import Arrays, Source, SourceItem
from rsir.data.nomenclature import BEN19
from rsir.data.options import ReaderOption
from rsir.errors import FormatError, ItemError

METADATA = "metadata.parquet"
SNOW_CLOUD_METADATA = "metadata_for_patches_with_snow_cloud_or_shadow.parquet"
_S2_NAME = re.compile(r"^(?P<mission>S2[ABC])_MSIL2A_(?P<date>\d{8}T\d{6})_N\d{4}_R\d{3}_T(?P<tile>\w{5})_"
                      r"(?P<row>\d+)_(?P<col>\d+)$")


def parse_s2_name(patch_id: str) -> dict[str, Any]:
    """Acquisition date (ISO), tile and row/column of a reBEN Sentinel-2 patch name (empty when it does not parse)."""
    m = _S2_NAME.match(patch_id)
    if not m:
        return {}
    d = m.group("date")
    return {"date": f"{d[0:4]}-{d[4:6]}-{d[6:8]}T{d[9:11]}:{d[11:13]}:{d[13:15]}", "tile": m.group("tile"),
            "patch_row": int(m.group("row")), "patch_col": int(m.group("col"))}


def _find_lmdb(root: Path) -> Path:
    if (root / "data.mdb").exists():
        return root
    cands = sorted(p.parent for p in root.rglob("data.mdb"))
    if not cands:
        raise FormatError(f"{root}: no LMDB (data.mdb) found; expected the reBEN BigEarthNet-V2-LMDB folder")
    return cands[0]


def _find_metadata(places: list[Path], options: dict[str, Any]) -> list[Path]:
    if options.get("metadata"):
        return [Path(options["metadata"])]
    for base in places:
        found = [base / n for n in (METADATA, SNOW_CLOUD_METADATA) if (base / n).exists()]
        if found and found[0].name == METADATA:
            return found
    raise FormatError(f"{places[0]}: {METADATA} not found beside the LMDB (pass --option metadata=PATH)")


def read_metadata(paths: list[Path]) -> pd.DataFrame:
    """The reBEN metadata tables, concatenated, with a clear error for a foreign file."""
    frames = []
    for p in paths:
        try:
            df = pd.read_parquet(p)
        except Exception as e:
            raise FormatError(f"{p}: not a readable Parquet file ({e})") from None
        need = {"patch_id", "labels", "split"}
        if not need <= set(df.columns):
            raise FormatError(f"{p}: not reBEN metadata, missing columns {sorted(need - set(df.columns))}")
        frames.append(df)
    meta = pd.concat(frames, ignore_index=True).drop_duplicates("patch_id")
    return meta.reset_index(drop=True)


_S1 = ReaderOption("s1", "bool", "pair each Sentinel-2 patch with its Sentinel-1 partner", True)
_SIZE = ReaderOption("size", "int", "patch size in pixels at 10 m", 120, minimum=6)
LMDB_OPTIONS = (
    ReaderOption("lmdb", "dir", "the LMDB folder (holding data.mdb); default: the first found below the source"),
    ReaderOption("metadata", "file", "reBEN metadata.parquet; default: the one beside the LMDB"),
    _S1, _SIZE,
)


def read_reben_lmdb(root: Path, options: dict[str, Any]) -> Source:
    """Items of a reBEN LMDB: S2 and (when present) its S1 partner, labels and splits from the metadata."""
    lmdb_dir = Path(options["lmdb"]) if options.get("lmdb") else _find_lmdb(root)
    places = [root if root.is_dir() else root.parent, lmdb_dir.parent, lmdb_dir]
    meta = read_metadata(_find_metadata(places, options))
    with_s1 = bool(options.get("s1", True))
    size = int(options.get("size") or 120)
    specs = [s2_spec(size)] + ([s1_spec(size)] if with_s1 else [])
    try:
        env = lmdb.open(str(lmdb_dir), readonly=True, lock=False, readahead=False, subdir=True)
    except lmdb.Error as e:
        raise FormatError(f"{lmdb_dir}: cannot open LMDB ({e})") from None

    def items() -> Iterator[SourceItem]:
        for row in meta.itertuples(index=False):
            pid = str(row.patch_id)
            s1_name = str(getattr(row, "s1_name", "") or "")
            m: dict[str, Any] = {
                "split": str(row.split), "labels": [str(x) for x in row.labels],
                "country": str(getattr(row, "country", "") or ""), "s1_id": s1_name, "source": f"{lmdb_dir}:{pid}",
            }
            m.update(parse_s2_name(pid))
            for flag in ("contains_seasonal_snow", "contains_cloud_or_shadow"):
                if hasattr(row, flag):
                    m[flag] = bool(getattr(row, flag))
            if hasattr(row, "s2v1_name"):
                m["s2v1_name"] = str(row.s2v1_name)
            yield SourceItem(pid, m, _loader(env, pid, s1_name if with_s1 else ""))

    return Source("reben", specs, BEN19, items(), len(meta), info={"lmdb": str(lmdb_dir)})


def _loader(env: lmdb.Environment, pid: str, s1_name: str):  # type: ignore[no-untyped-def]
    def load() -> Arrays:
        out: Arrays = {}
        with env.begin() as txn:
            v = txn.get(pid.encode())
            if v is None:
                raise ItemError(pid, "listed in metadata.parquet but absent from the LMDB")
            out["s2"] = decode_value(v, pid)
            if s1_name:
                v1 = txn.get(s1_name.encode())
                if v1 is None:
                    raise ItemError(pid, f"Sentinel-1 partner {s1_name!r} absent from the LMDB")
                s1 = decode_value(v1, s1_name)
                out["s1"] = {b: np.asarray(a, dtype=np.float32) for b, a in s1.items()}
        return out

    return load


# --- raw GeoTIFF layout ----------------------------------------------------------------------------------------
S2_DIR, S1_DIR, REFMAP_DIR = "BigEarthNet-S2", "BigEarthNet-S1", "Reference_Maps"
REFMAP_SUFFIX = "_reference_map.tif"
REFMAP_BAND = "CLC2018"
_S1_NAME = re.compile(r"^(?P<mission>S1[ABC])_IW_GRDH_1SDV_(?P<date>\d{8}T\d{6})_(?P<tile>\w{5})_"
                      r"(?P<row>\d+)_(?P<col>\d+)$")


def parse_s1_name(name: str) -> dict[str, Any]:
    """Acquisition date (ISO), tile and row/column of a reBEN Sentinel-1 patch name (empty when it does not parse)."""
    m = _S1_NAME.match(name)
    if not m:
        return {}
    d = m.group("date")
    return {"date": f"{d[0:4]}-{d[4:6]}-{d[6:8]}T{d[9:11]}:{d[11:13]}:{d[13:15]}", "tile": m.group("tile"),
            "patch_row": int(m.group("row")), "patch_col": int(m.group("col"))}


def refmap_spec(size: int = 120) -> ModalitySpec:
    """The CLC 2018 pixel reference map of a reBEN patch: one uint16 band of CLC level-3 codes."""
    return ModalitySpec("refmap", [REFMAP_BAND], {REFMAP_BAND: (size, size)}, "uint16", "CLC 2018 code",
                        (size, size), "CORINE Land Cover 2018 reference map (class codes; resample with nearest)",
                        extra={"resampling": "nearest"})


def _patch_dirs(top: Path, marker: str) -> dict[str, Path]:
    """{patch name: folder} of <top>/<tile or scene>/<patch>/ folders holding <patch><marker>."""
    found: dict[str, Path] = {}
    if not top.is_dir():
        return found
    for group in sorted(p for p in top.iterdir() if p.is_dir()):
        for patch in sorted(p for p in group.iterdir() if p.is_dir()):
            if (patch / f"{patch.name}{marker}").exists():
                found[patch.name] = patch
    return found


def _find_tiff_metadata(root: Path, options: dict[str, Any]) -> list[Path]:
    if options.get("metadata"):
        p = Path(options["metadata"])
        if p.is_dir():
            return _find_metadata([p], {})
        if not p.exists():
            raise FormatError(f"{p}: metadata file not found (--option metadata=PATH)")
        found = [p] + [p.parent / SNOW_CLOUD_METADATA] * (p.name == METADATA and
                                                          (p.parent / SNOW_CLOUD_METADATA).exists())
        return found
    if (root / METADATA).exists():
        return _find_metadata([root], {})
    return []


def _grid_key(info: dict[str, Any]) -> tuple[str, int, int] | None:
    if not info:
        return None
    return (str(info["tile"]), int(info["patch_row"]), int(info["patch_col"]))


TIFF_OPTIONS = (
    ReaderOption("metadata", "path", "reBEN metadata.parquet (or its folder) with labels and splits; default: the "
                 "one in the source folder, else items are unlabelled"),
    _S1, _SIZE,
)


def read_reben_tiff(root: Path, options: dict[str, Any]) -> Source:
    """Items of the reBEN raw GeoTIFF layout: S2 patches (+ their S1 partner and CLC reference map).

    Labels and splits come from a reBEN metadata.parquet (``--option metadata=PATH``, or one in ``root``);
    without it items are unlabelled. S1 patches are paired with S2 by the metadata's ``s1_name``; without
    metadata by the tile/row/column in the names when exactly one S1 and one S2 patch share them. S1 patches
    left unpaired become items of their own (modality s1 only); ``--option s1=false`` leaves S1 out.
    Reference maps attach to the S2 patch of the same name; one without its S2 patch is counted, not ingested.
    """
    from rsir.data.tiffio import read_band, read_geo

    if (root / S2_DIR).is_dir() or (root / S1_DIR).is_dir():
        base = root
    elif root.name in (S2_DIR, S1_DIR, REFMAP_DIR):
        base = root.parent
    else:
        raise FormatError(f"{root}: not the reBEN GeoTIFF layout (no {S2_DIR}/ or {S1_DIR}/ folder inside)")
    size = int(options.get("size") or 120)
    with_s1 = bool(options.get("s1", True))
    s2_dirs = _patch_dirs(base / S2_DIR, "_B02.tif")
    s1_dirs = _patch_dirs(base / S1_DIR, "_VV.tif") if with_s1 else {}
    ref_dirs = _patch_dirs(base / REFMAP_DIR, REFMAP_SUFFIX)
    if not s2_dirs and not s1_dirs:
        raise FormatError(f"{base}: no patches found under {S2_DIR}/<tile>/<patch>/ or {S1_DIR}/<scene>/<patch>/")

    meta_paths = _find_tiff_metadata(base, options)
    meta = read_metadata(meta_paths) if meta_paths else None
    rows: dict[str, Any] = {} if meta is None else {str(r.patch_id): r for r in meta.itertuples(index=False)}

    pair: dict[str, str] = {}
    if meta is not None:
        for pid in s2_dirs:
            r = rows.get(pid)
            s1_name = str(getattr(r, "s1_name", "") or "") if r is not None else ""
            if s1_name in s1_dirs:
                pair[pid] = s1_name
        pairing = "metadata s1_name"
    else:
        s2_keys: dict[tuple[str, int, int], list[str]] = {}
        s1_keys: dict[tuple[str, int, int], list[str]] = {}
        for pid in s2_dirs:
            k = _grid_key(parse_s2_name(pid))
            if k:
                s2_keys.setdefault(k, []).append(pid)
        for name in s1_dirs:
            k = _grid_key(parse_s1_name(name))
            if k:
                s1_keys.setdefault(k, []).append(name)
        for k, s2s in s2_keys.items():
            if len(s2s) == 1 and len(s1_keys.get(k, [])) == 1:
                pair[s2s[0]] = s1_keys[k][0]
        pairing = "tile/row/column in the patch names (unique matches only)"
    paired_s1 = set(pair.values())
    lone_s1 = [n for n in s1_dirs if n not in paired_s1]
    orphan_refmaps = sorted(set(ref_dirs) - set(s2_dirs))
    with_ref = any(p in ref_dirs for p in s2_dirs)

    specs: list[ModalitySpec] = []
    if s2_dirs:
        specs.append(s2_spec(size))
    if s1_dirs:
        specs.append(s1_spec(size))
    if with_ref:
        specs.append(refmap_spec(size))
    s2_bands = specs[0].bands if s2_dirs else []

    def load_s2(pid: str) -> Arrays:
        d = s2_dirs[pid]
        out: Arrays = {"s2": {b: read_band(d / f"{pid}_{b}.tif", pid) for b in s2_bands}}
        if pid in pair:
            out.update(load_s1(pair[pid], pid))
        if pid in ref_dirs:
            out["refmap"] = {REFMAP_BAND: read_band(ref_dirs[pid] / f"{pid}{REFMAP_SUFFIX}", pid)}
        return out

    def load_s1(name: str, item: str) -> Arrays:
        d = s1_dirs[name]
        return {"s1": {b: np.asarray(read_band(d / f"{name}_{b}.tif", item), dtype=np.float32)
                       for b in ("VV", "VH")}}

    def items() -> Iterator[SourceItem]:
        for pid, d in s2_dirs.items():
            missing = [b for b in s2_bands if not (d / f"{pid}_{b}.tif").exists()]
            m: dict[str, Any] = {"source": str(d)}
            m.update(parse_s2_name(pid))
            r = rows.get(pid)
            if r is not None:
                m.update({"split": str(r.split), "labels": [str(x) for x in r.labels],
                          "country": str(getattr(r, "country", "") or "")})
                if hasattr(r, "s2v1_name"):
                    m["s2v1_name"] = str(r.s2v1_name)
            if pid in pair:
                m["s1_id"] = pair[pid]
            if missing:
                def fail(pid: str = pid, missing: list[str] = missing, d: Path = d) -> Arrays:
                    raise ItemError(pid, f"band files missing: {', '.join(f'{pid}_{b}.tif' for b in missing)}",
                                    str(d))
                yield SourceItem(pid, m, fail)
                continue
            m.update(read_geo(d / f"{pid}_B02.tif", pid).meta())
            yield SourceItem(pid, m, lambda pid=pid: load_s2(pid))  # type: ignore[misc]
        for name in lone_s1:
            d = s1_dirs[name]
            m = {"source": str(d), **parse_s1_name(name)}
            if (d / f"{name}_VH.tif").exists():
                m.update(read_geo(d / f"{name}_VV.tif", name).meta())
            yield SourceItem(name, m, lambda name=name: load_s1(name, name))  # type: ignore[misc]

    info = {"pairing": pairing, "s2_patches": len(s2_dirs), "s1_patches": len(s1_dirs), "pairs": len(pair),
            "unpaired_s1_items": len(lone_s1), "reference_maps": len(ref_dirs) - len(orphan_refmaps),
            "reference_maps_without_s2": orphan_refmaps, "metadata": [str(p) for p in meta_paths]}
    if meta is not None:
        info["s2_not_in_metadata"] = sum(1 for p in s2_dirs if p not in rows)
    return Source("reben-tiff", specs, BEN19, items(), len(s2_dirs) + len(lone_s1), info=info)
