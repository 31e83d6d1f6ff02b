"""reBEN raw GeoTIFF layout: fixture files written in the real layout, and the real sample when present."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rsir.data.archive import open_archive
from rsir.data.formats import ingest
from rsir.errors import FormatError, ItemError
from tests.conftest import shared_path
from tests.data.fixtures_tiff import REBEN_LABELS, REBEN_S1, REBEN_S2, s2_band_value, write_reben_tiff


def test_pairs_by_grid_name_without_metadata(tmp_path):
    src = write_reben_tiff(tmp_path / "src")
    rep = ingest(src, "reben-tiff", tmp_path / "a", progress=False)
    a = open_archive(rep.path)
    # 2 S2 items (S2 #0 paired with S1 #0: both 33UUP row 75 col 43) + S1 #1 (70_48) on its own = 3
    assert rep.n_items == 3
    assert a.ids == [REBEN_S2[0], REBEN_S2[1], REBEN_S1[1]]
    assert set(a.modalities) == {"s2", "s1", "refmap"}
    cat = a.catalog.set_index("id")
    assert cat.loc[REBEN_S2[0], "s1_id"] == REBEN_S1[0] and cat.loc[REBEN_S2[1], "s1_id"] == ""
    assert list(cat.loc[REBEN_S2[0], "modalities"]) == ["refmap", "s1", "s2"]
    assert list(cat.loc[REBEN_S1[1], "modalities"]) == ["s1"]
    assert all(len(x) == 0 for x in cat["labels"]) and set(cat["split"]) == {""}
    s2 = a.get(REBEN_S2[1], "s2")
    for b, shape in (("B01", (20, 20)), ("B05", (60, 60)), ("B02", (120, 120))):
        assert s2[b].shape == shape
        # patch 1: 1000 * (band index + 1) + 10 plus a 0..6 ramp
        assert int(s2[b].min()) == s2_band_value(b, 1) and int(s2[b].max()) == s2_band_value(b, 1) + 6
    ref = a.get(REBEN_S2[0], "refmap")["CLC2018"]
    assert ref.dtype == np.uint16 and np.unique(ref).tolist() == [231, 312]
    s1 = a.get(REBEN_S2[0], "s1")
    assert s1["VV"].dtype == np.float32 and math.isclose(float(s1["VV"][0, 0]), -10.0)


def test_georeferencing_fields(tmp_path):
    src = write_reben_tiff(tmp_path / "src")
    a = open_archive(ingest(src, "reben-tiff", tmp_path / "a", progress=False).path)
    row = a.catalog.set_index("id").loc[REBEN_S2[0]]
    assert row["crs"] == "EPSG:32633"
    assert list(row["transform"]) == [10.0, 0.0, 390000.0, 0.0, -10.0, 5348400.0]
    # centre (390600, 5347800) in UTM 33N (central meridian 15 E): west of 15 E, about 48.27 N
    assert 13.4 < row["lon"] < 13.6 and 48.2 < row["lat"] < 48.35
    lo0, la0, lo1, la1 = row["bbox"]
    assert lo0 < row["lon"] < lo1 and la0 < row["lat"] < la1
    # a 1.2 km square is about 0.016 degrees of longitude at 48 N (1.2 / (111.32 * cos 48.27))
    assert abs((lo1 - lo0) - 1.2 / (111.32 * math.cos(math.radians(48.27)))) < 2e-3
    assert row["tile"] == "33UUP" and row["date"] == "2017-06-13T10:10:31"


def test_metadata_labels_splits_and_s1_name_pairing(tmp_path):
    src = write_reben_tiff(tmp_path / "src", with_metadata=True)
    a = open_archive(ingest(src, "reben-tiff", tmp_path / "a", progress=False).path)
    # the metadata pairs crosswise (S2 #0 <-> S1 #1), which overrides the name-based pairing: no lone S1 left
    assert a.ids == REBEN_S2
    cat = a.catalog.set_index("id")
    assert cat.loc[REBEN_S2[0], "s1_id"] == REBEN_S1[1] and cat.loc[REBEN_S2[1], "s1_id"] == REBEN_S1[0]
    assert list(cat.loc[REBEN_S2[0], "labels"]) == REBEN_LABELS[0]
    assert cat["split"].tolist() == ["train", "test"]
    assert math.isclose(float(a.get(REBEN_S2[0], "s1")["VV"][0, 0]), -11.0)  # S1 #1: -10 - 1


def test_missing_band_and_corrupt_band_name_the_file(tmp_path):
    src = write_reben_tiff(tmp_path / "src")
    d = next((src / "BigEarthNet-S2").glob(f"*/{REBEN_S2[1]}"))
    (d / f"{REBEN_S2[1]}_B07.tif").unlink()
    with pytest.raises(ItemError, match=f"{REBEN_S2[1]}_B07.tif"):
        ingest(src, "reben-tiff", tmp_path / "a", progress=False)
    rep = ingest(src, "reben-tiff", tmp_path / "b", skip_bad=True, progress=False)
    assert rep.n_items == 2 and rep.skipped[0][0] == REBEN_S2[1]
    (d / f"{REBEN_S2[1]}_B07.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(ItemError, match=f"{REBEN_S2[1]}_B07.tif"):
        ingest(src, "reben-tiff", tmp_path / "c", progress=False)


def test_not_the_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="BigEarthNet-S2"):
        ingest(tmp_path / "empty", "reben-tiff", tmp_path / "a", progress=False)


def test_real_rico_hdl_sample(tmp_path):
    src = shared_path("rico-hdl-tiffs", "BigEarthNet")
    rep = ingest(src, "reben-tiff", tmp_path / "a", progress=False)
    a = open_archive(rep.path)
    # the sample's S1 patch (70_48) and S2 patch (75_43) do not pair; its reference map has no S2 patch
    assert rep.n_items == 2 and set(a.modalities) == {"s2", "s1"}
    s2_id = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_75_43"
    assert a.get(s2_id, "s2")["B01"].shape == (20, 20)
    row = a.catalog.set_index("id").loc[s2_id]
    assert row["crs"] == "EPSG:32633" and 13.0 < row["lon"] < 14.0 and 48.0 < row["lat"] < 48.5
    assert a.manifest["info"]["reference_maps_without_s2"] == [
        "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57"]
