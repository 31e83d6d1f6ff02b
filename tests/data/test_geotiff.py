"""Generic GeoTIFF folder: bands option, labels CSV, size mismatch and resampling, bad files named."""

from __future__ import annotations

import numpy as np
import pytest

from rsir.data.archive import open_archive
from rsir.data.formats import ingest
from rsir.errors import ItemError
from tests.conftest import shared_path
from tests.data.fixtures_tiff import write_geotiff_folder, write_tif


def test_ingest_with_bands_and_labels(tmp_path):
    src = write_geotiff_folder(tmp_path / "src")
    opts = {"bands": "B02,B03,B04,B08", "labels": str(src / "labels.csv")}
    a = open_archive(ingest(src / "img", "geotiff", tmp_path / "a", opts, progress=False).path)
    assert a.ids == ["a", "b", "sub/c"]
    assert a.nomenclature.classes == ("forest", "urban", "water")
    assert [list(x) for x in a.catalog["labels"]] == [["forest", "water"], ["urban"], ["forest"]]
    assert a.catalog["split"].tolist() == ["train", "test", ""]
    # file k, band i holds 10 * (i + 1) + k: sub/c (k = 2) band B08 (i = 3) is 42
    assert int(a.get("sub/c", "image")["B08"][0, 0]) == 42
    assert a.catalog["crs"].tolist() == ["EPSG:32633"] * 3


def test_wrong_band_count_names_the_file(tmp_path):
    src = write_geotiff_folder(tmp_path / "src")
    write_tif(src / "img" / "d.tif", np.zeros((3, 32, 32), np.uint16))
    with pytest.raises(ItemError, match="d.tif has 3 bands, --bands names 4"):
        ingest(src / "img", "geotiff", tmp_path / "a", {"bands": "B02,B03,B04,B08"}, progress=False)
    rep = ingest(src / "img", "geotiff", tmp_path / "b", {"bands": "B02,B03,B04,B08"}, skip_bad=True,
                 progress=False)
    assert rep.n_items == 3 and rep.skipped[0][0] == "d" and "d.tif" in rep.skipped[0][1]


def test_corrupt_file_names_the_file(tmp_path):
    src = write_geotiff_folder(tmp_path / "src")
    (src / "img" / "bad.tif").write_bytes(b"II*\x00" + b"\x00" * 20)
    with pytest.raises(ItemError, match="bad.tif"):
        ingest(src / "img", "geotiff", tmp_path / "a", progress=False)


def test_nan_in_float_data_names_the_file(tmp_path):
    d = tmp_path / "src"
    write_tif(d / "ok.tif", np.ones((2, 8, 8), np.float32))
    x = np.ones((2, 8, 8), np.float32)
    x[1, 3, 3] = np.nan
    write_tif(d / "nan.tif", x)
    with pytest.raises(ItemError, match="nan.tif has 1 NaN"):
        ingest(d, "geotiff", tmp_path / "a", progress=False)


def test_size_mismatch_and_resample(tmp_path):
    d = tmp_path / "src"
    write_tif(d / "a.tif", np.full((1, 4, 4), 8, np.uint16))
    big = np.zeros((1, 8, 8), np.uint16)
    big[0, :, 4:] = 100
    write_tif(d / "b.tif", big)
    with pytest.raises(ItemError, match="b.tif is 8x8 px, the first image is 4x4"):
        ingest(d, "geotiff", tmp_path / "a", progress=False)
    a = open_archive(ingest(d, "geotiff", tmp_path / "b", {"size": "4"}, progress=False).path)
    b1 = a.get("b", "image")["B1"]
    # bilinear 8 -> 4 (align_corners=False) samples at source x = 0.5, 2.5, 4.5, 6.5: columns 0-1 -> 0, 2-3 -> 100
    assert b1.dtype == np.uint16 and b1[0].tolist() == [0, 0, 100, 100]
    assert a.get("a", "image")["B1"].tolist() == [[8] * 4] * 4


def test_real_ucmerced_folder(tmp_path):
    src = shared_path("rico-hdl-tiffs", "UCMerced_LandUse")
    a = open_archive(ingest(src, "geotiff", tmp_path / "a", {"bands": "R,G,B"}, progress=False).path)
    assert len(a) == 4 and a.spec("image").shapes["R"] == (256, 256)
