"""Major-TOM reader: cell tiling, per-patch georeferencing, cloud mask, on fixtures and the real sample."""

from __future__ import annotations

import numpy as np
import pytest

from rsir.data.archive import open_archive
from rsir.data.formats import ingest, open_source
from rsir.errors import FormatError, ItemError
from tests.conftest import shared_path
from tests.data.fixtures_misc import write_majortom_cell


def test_tiling_values_and_georef(tmp_path):
    root = write_majortom_cell(tmp_path / "mt", size=270, cloud_rows=30)
    rep = ingest(root, "majortom", tmp_path / "a", progress=False)
    a = open_archive(rep.path)
    # 270 // 120 = 2 patches per side; the last 30 rows and columns are dropped
    assert rep.n_items == 4 and a.ids == ["12U_345R_0_0", "12U_345R_0_1", "12U_345R_1_0", "12U_345R_1_1"]
    s2 = a.get("12U_345R_1_1", "s2")
    assert s2["B02"].shape == (120, 120) and s2["B05"].shape == (60, 60) and s2["B01"].shape == (20, 20)
    # value = row * 1000 + col of the source band: 10 m (120, 120) -> 120120 % 65536 = 54584;
    # 20 m (60, 60) -> 60060; 60 m (20, 20) -> 20020; last pixel of the 10 m patch (239, 239) -> 239239 % 65536
    assert int(s2["B02"][0, 0]) == 54584 and int(s2["B05"][0, 0]) == 60060 and int(s2["B01"][0, 0]) == 20020
    assert int(s2["B04"][-1, -1]) == 239239 % 65536
    it = a.item("12U_345R_1_1")
    assert it["cell"] == "12U_345R" and it["grid_row"] == "12U" and it["grid_col"] == "345R"
    assert (it["patch_row"], it["patch_col"]) == (1, 1) and it["tile"] == "32UPU"
    assert it["date"] == "2021-07-04T10:30:31" and it["crs"] == "EPSG:32632"
    # the patch's origin is the cell's shifted by 120 px * 10 m in x and -y
    assert it["transform"] == [10.0, 0.0, 501200.0, 0.0, -10.0, 5398800.0]
    lo0, la0, lo1, la1 = it["bbox"]
    assert lo0 < it["lon"] < lo1 and la0 < it["lat"] < la1
    assert 9.0 < it["lon"] < 9.05 and 48.0 < it["lat"] < 49.0  # x 500000 is UTM 32's central meridian 9 E
    # cloud mask on the first 30 rows: 30 / 120 = 0.25 of patch (0, c), none in row 1
    assert a.item("12U_345R_0_1")["cloud_fraction"] == 0.25 and it["cloud_fraction"] == 0.0
    m = a.get("12U_345R_0_0", "cloud")["mask"]
    assert m.shape == (120, 120) and m[:30].all() and not m[30:].any()


def test_patch_size_option(tmp_path):
    root = write_majortom_cell(tmp_path / "mt", size=270)
    src = open_source(root, "majortom", {"patch-size": "90", "cloud": "false"})
    assert src.n_items == 9 and [m.name for m in src.modalities] == ["s2"]
    first = next(iter(src.items)).load()
    assert first["s2"]["B09"].shape == (15, 15) and "cloud" not in first
    with pytest.raises(FormatError, match="multiple of 6"):
        open_source(root, "majortom", {"patch-size": "100"})
    with pytest.raises(FormatError, match="smaller than patch-size"):
        open_source(root, "majortom", {"patch-size": "300"})


def test_errors(tmp_path):
    with pytest.raises(FormatError, match="no Major-TOM product folder"):
        open_source(tmp_path, "majortom")
    root = write_majortom_cell(tmp_path / "mt", size=132)
    next(root.rglob("B11.tif")).write_bytes(b"garbage")
    with pytest.raises(ItemError, match="B11.tif.*unreadable GeoTIFF"):
        ingest(root, "majortom", tmp_path / "a", progress=False)


def test_real_cells(tmp_path):
    src = shared_path("rico-hdl-tiffs", "Major-TOM-Core")
    rep = ingest(src, "majortom", tmp_path / "m", progress=False)
    a = open_archive(rep.path)
    # 1068 // 120 = 8 -> 64 patches per cell, 2 cells
    assert rep.n_items == 128 and set(a.catalog["cell"]) == {"0U_199R", "199U_1099R"}
    it = a.item("0U_199R_0_0")
    assert it["crs"] == "EPSG:32633" and abs(it["lat"]) < 0.2  # row 0U lies at the equator
    assert a.get("199U_1099R_7_7", "s2")["B09"].shape == (20, 20)
    assert np.isfinite(a.catalog["cloud_fraction"]).all()
