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
from rsir.data.bands import s1_spec, s2_spec
from rsir.data.formats import Arrays, Source, SourceItem
from rsir.data.nomenclature import BEN19
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


def read_reben_lmdb(root: Path, options: dict[str, Any]) -> Source:
    """Items of a reBEN LMDB: S2 and (when present) its S1 partner, labels and splits from the metadata."""
    lmdb_dir = Path(options["lmdb"]) if options.get("lmdb") else _find_lmdb(root)
    places = [root if root.is_dir() else root.parent, lmdb_dir.parent, lmdb_dir]
    meta = read_metadata(_find_metadata(places, options))
    with_s1 = str(options.get("s1", "true")).lower() not in ("0", "false", "no")
    size = int(options.get("size", 120))
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
