"""EuroSAT MS / RGB: fixture files in the real layout and the real samples when present."""

from __future__ import annotations

import numpy as np
import pytest

from rsir.data.archive import open_archive
from rsir.data.eurosat import EUROSAT_CLASSES
from rsir.data.formats import ingest
from rsir.errors import ItemError
from tests.conftest import shared_path
from tests.data.fixtures_tiff import EUROSAT_FILE_BANDS, eurosat_value, write_eurosat, write_tif


def test_ingest_fixture_band_order(tmp_path):
    src = write_eurosat(tmp_path / "src")
    a = open_archive(ingest(src, "eurosat", tmp_path / "a", progress=False).path)
    assert a.ids == ["AnnualCrop_1", "Pasture_300", "SeaLake_3000"]
    assert a.nomenclature.name == "eurosat-10" and a.nomenclature.classes == EUROSAT_CLASSES
    assert [list(x) for x in a.catalog["labels"]] == [["AnnualCrop"], ["Pasture"], ["SeaLake"]]
    spec = a.spec("ms")
    assert spec.bands[8] == "B8A" and len(spec.bands) == 13
    bands = a.get("Pasture_300", "ms")
    # B8A is the 13th band in the file: value 100 * 13 + 1; B09 the 9th: 100 * 9 + 1
    assert int(bands["B8A"][0, 0]) == 1301 and int(bands["B09"][0, 0]) == 901
    for i, b in enumerate(EUROSAT_FILE_BANDS):
        assert int(bands[b][5, 5]) == eurosat_value(i, 1)
    assert a.catalog["crs"].tolist() == ["EPSG:32635"] * 3


def test_wrong_band_count_names_the_file(tmp_path):
    src = write_eurosat(tmp_path / "src")
    write_tif(src / "Forest" / "Forest_7.tif", np.zeros((12, 64, 64), np.uint16))
    with pytest.raises(ItemError, match="Forest_7.tif has 12 bands, expected 13"):
        ingest(src, "eurosat", tmp_path / "a", progress=False)
    rep = ingest(src, "eurosat", tmp_path / "b", skip_bad=True, progress=False)
    assert rep.n_items == 3 and rep.skipped[0][0] == "Forest_7"


def test_real_eurosat_ms(tmp_path):
    src = shared_path("rico-hdl-tiffs", "EuroSAT_MS")
    a = open_archive(ingest(src, "eurosat", tmp_path / "a", progress=False).path)
    assert len(a) == 3
    sea = a.get("SeaLake_3000", "ms")
    # water: the cirrus band B10 is near zero, and B8A (NIR) sits close to B08, far above SWIR B12
    assert float(sea["B10"].mean()) < 20
    assert abs(float(sea["B8A"].mean()) - float(sea["B08"].mean())) < 50 < float(sea["B8A"].mean() - sea["B12"].mean())


def test_real_eurosat_rgb(tmp_path):
    src = shared_path("rico-hdl-tiffs", "EuroSAT_RGB")
    a = open_archive(ingest(src, "eurosat", tmp_path / "a", progress=False).path)
    assert list(a.modalities) == ["rgb"] and a.get(0, "rgb")["R"].shape == (64, 64)
