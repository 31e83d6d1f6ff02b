"""Write the committed reBEN fixture (tests/data/fixtures/reben-mini) in the official reBEN layout.

The layout is the one of the BigEarthNet v2.0 DL-optimised release: a folder ``BigEarthNet-V2-LMDB`` holding an
LMDB whose keys are the Sentinel-2 patch_id and the Sentinel-1 name, whose values are the safetensors bytes of a
{band: array} dict (S2 L2A bands at their native resolution as uint16, 10 m / 20 m / 60 m; S1 VV and VH as
float32 dB), and ``metadata.parquet`` (patch_id, labels, split, country, s1_name, s2v1_name, snow/cloud flags)
beside it. Patches are tiny (12 x 12 at 10 m, so 6 x 6 at 20 m and 2 x 2 at 60 m: ingest with
``--option size=12``) so the files stay a few kilobytes. The values are fixed below, so tests can check exact
pixels.

Run ``python tests/data/make_reben_fixture.py`` to rewrite it (the result is committed; the LMDB is compacted).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import lmdb
import numpy as np
import pandas as pd
from safetensors.numpy import save

OUT = Path(__file__).parent / "fixtures" / "reben-mini"
SIZE = 12
S2_GSD = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10, "B8A": 20,
          "B09": 60, "B11": 20, "B12": 20}
ITEMS = [
    # (tile, row, col, split, country, labels, snow, cloud)
    ("33UUP", 26, 57, "train", "Austria", ["Coniferous forest", "Mixed forest"], False, False),
    ("33UUP", 26, 58, "train", "Austria", ["Arable land", "Pastures"], False, False),
    ("35VNJ", 0, 1, "validation", "Finland", ["Coniferous forest", "Inland waters"], True, False),
    ("35VNJ", 0, 2, "test", "Finland", ["Urban fabric"], False, True),
]


def s2_name(tile: str, row: int, col: int) -> str:
    date = "20170613T101031" if tile == "33UUP" else "20171101T094131"
    return f"S2A_MSIL2A_{date}_N9999_R022_T{tile}_{row}_{col}"


def s1_name(tile: str, row: int, col: int) -> str:
    date = "20170612T165809" if tile == "33UUP" else "20171101T154016"
    return f"S1B_IW_GRDH_1SDV_{date}_{tile}_{row}_{col}"


def s2_value(i: int, band: str) -> np.ndarray:
    """Reflectance x 10000 as uint16: a ramp plus a per-item, per-band offset (exact values tests can check)."""
    n = SIZE * 10 // S2_GSD[band]
    base = 100 * (i + 1) + 10 * list(S2_GSD).index(band)
    return (base + np.arange(n * n, dtype=np.uint16).reshape(n, n)).astype(np.uint16)


def s1_value(i: int, band: str) -> np.ndarray:
    """Backscatter in dB as float32: VV around -10, VH around -17."""
    level = -10.0 if band == "VV" else -17.0
    return (level + 0.1 * i + 0.01 * np.arange(SIZE * SIZE).reshape(SIZE, SIZE)).astype(np.float32)


def main() -> Path:
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "BigEarthNet-V2-LMDB").mkdir(parents=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = lmdb.open(tmp, map_size=1 << 24)
        with env.begin(write=True) as txn:
            for i, (tile, row, col, split, country, labels, snow, cloud) in enumerate(ITEMS):
                pid, s1 = s2_name(tile, row, col), s1_name(tile, row, col)
                txn.put(pid.encode(), save({b: s2_value(i, b) for b in S2_GSD}))
                txn.put(s1.encode(), save({b: s1_value(i, b) for b in ("VV", "VH")}))
                rows.append({"patch_id": pid, "labels": labels, "split": split, "country": country,
                             "s1_name": s1, "s2v1_name": f"S2A_MSIL2A_{pid.split('_')[2]}_{row}_{col}",
                             "contains_seasonal_snow": snow, "contains_cloud_or_shadow": cloud})
        env.copy(str(OUT / "BigEarthNet-V2-LMDB"), compact=True)
        env.close()
    (OUT / "BigEarthNet-V2-LMDB" / "lock.mdb").unlink(missing_ok=True)
    meta = pd.DataFrame(rows)
    meta.to_parquet(OUT / "metadata.parquet", index=False)
    meta[meta.contains_seasonal_snow | meta.contains_cloud_or_shadow].to_parquet(
        OUT / "metadata_for_patches_with_snow_cloud_or_shadow.parquet", index=False)
    return OUT


if __name__ == "__main__":
    print(main())
