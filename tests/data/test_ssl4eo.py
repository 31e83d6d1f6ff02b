"""SSL4EO-S12 reader on fixture files in the real layout and on the real sample."""

from __future__ import annotations

import numpy as np
import pytest

from rsir.data.archive import open_archive
from rsir.data.formats import ingest, open_source
from rsir.data.ssl4eo import parse_time, ssl4eo_band_name, to_db
from rsir.errors import FormatError, ItemError
from tests.conftest import shared_path
from tests.data.fixtures_misc import band_value, write_ssl4eo


def test_band_names_and_times():
    assert [ssl4eo_band_name(b) for b in ("B1", "B8", "B8A", "B10", "B12", "VV")] == \
        ["B01", "B08", "B8A", "B10", "B12", "VV"]
    assert parse_time("S1A_IW_GRDH_1SDV_20200607T010800_20200607T010825_x") == "2020-06-07T01:08:00"
    assert parse_time("nodate") == ""


def test_to_db():
    # 10 * log10(0.1) = -10 dB, 10 * log10(0.01) = -20 dB; dB input (with negatives) stays as it is
    lin = np.array([0.1, 0.01], np.float32)
    np.testing.assert_allclose(to_db(lin, "auto"), [-10.0, -20.0], atol=1e-5)
    db = np.array([-10.0, 2.0], np.float32)
    np.testing.assert_array_equal(to_db(db, "auto"), db)
    np.testing.assert_array_equal(to_db(db, "db"), db)


def test_fixture_seasons_bands_georef(tmp_path):
    root = write_ssl4eo(tmp_path / "ssl4eo")
    rep = ingest(root, "ssl4eo", tmp_path / "a", progress=False)
    a = open_archive(rep.path)
    assert a.ids == ["0000042_0", "0000042_1"]
    assert list(a.modalities) == ["s2", "s2l1c", "s1"] and len(a.nomenclature) == 0
    it0, it1 = a.item(0), a.item(1)
    # seasons are paired in acquisition order: the 2020 folders are season 0 for every product
    assert it0["s2_date"] == "2020-06-20T10:10:31" and it0["s2l1c_date"] == "2020-06-25T10:10:31"
    assert it0["s1_date"] == "2020-06-18T17:00:00" and it0["date"] == it0["s2_date"]
    assert it1["s2_date"].startswith("2021-03-15") and it1["tile"] == "32UPU"
    assert it0["cloud_percentage"] == 1.5 and it1["cloud_percentage"] == 2.5
    s2 = a.get(1, "s2")
    assert s2["B01"].shape == (44, 44) and s2["B05"].shape == (132, 132) and s2["B02"].shape == (264, 264)
    assert int(s2["B8A"][0, 0]) == band_value("B8A", 1) == 109  # 100 * 1 + index 8 + 1
    l1c = a.get(0, "s2l1c")
    assert "B10" in l1c and int(l1c["B10"][3, 3]) == 11 and l1c["B10"].shape == (44, 44)
    s1 = a.get(1, "s1")
    assert float(s1["VV"][0, 0]) == -11.0 and float(s1["VH"][5, 5]) == -21.0
    # 264 px of 1e-4 degrees from (10, 50): centre 10 + 0.0132, 50 - 0.0132
    assert it0["crs"] == "EPSG:4326"
    assert it0["lon"] == pytest.approx(10.0132) and it0["lat"] == pytest.approx(49.9868)
    np.testing.assert_allclose(it0["bbox"], [10.0, 49.9736, 10.0264, 50.0], atol=1e-9)
    assert it0["s1_id"].startswith("S1B_IW_GRDH")


def test_linear_s1_converted_to_db(tmp_path):
    root = write_ssl4eo(tmp_path / "ssl4eo", linear_s1=True)
    src = open_source(root, "ssl4eo", {"modalities": "s1"})
    assert [m.name for m in src.modalities] == ["s1"]
    first = next(iter(src.items)).load()
    np.testing.assert_allclose(first["s1"]["VV"], -10.0, atol=1e-4)
    np.testing.assert_allclose(first["s1"]["VH"], -20.0, atol=1e-4)


def test_errors(tmp_path):
    with pytest.raises(FormatError, match="not an SSL4EO-S12 folder"):
        open_source(tmp_path, "ssl4eo")
    root = write_ssl4eo(tmp_path / "ssl4eo")
    with pytest.raises(FormatError, match="not available"):
        open_source(root, "ssl4eo", {"modalities": "s2,s3"})
    bad = next((root / "s2a" / "0000042").glob("2020*")) / "B4.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(ItemError, match="B4.tif") as e:
        ingest(root, "ssl4eo", tmp_path / "a", progress=False)
    assert "unreadable GeoTIFF" in str(e.value)
    rep = ingest(root, "ssl4eo", tmp_path / "b", progress=False, skip_bad=True)
    assert rep.n_items == 1 and rep.skipped[0][0] == "0000042_0"


def test_real_sample(tmp_path):
    src = shared_path("rico-hdl-tiffs", "SSL4EO-S12")
    rep = ingest(src, "ssl4eo", tmp_path / "s", progress=False)
    a = open_archive(rep.path)
    assert rep.n_items == 2 and set(a.modalities) == {"s2", "s2l1c", "s1"}
    s2 = a.get(0, "s2")
    assert s2["B02"].shape == (264, 264) and s2["B11"].shape == (132, 132) and s2["B09"].shape == (44, 44)
    s1 = a.get(0, "s1")
    assert float(np.median(s1["VH"])) < -10  # already dB in the release
    it = a.item(0)
    assert it["tile"] == "43RCP" and it["date"].startswith("2020-06-04")
    assert 73.2 < it["lon"] < 73.4 and 30.4 < it["lat"] < 30.5
    assert a.image(0, "s2").shape == (12, 264, 264)
