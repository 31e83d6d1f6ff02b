"""BigEarthNet v1.0 folders: 43 -> 19 class conversion, S1 pairing, splits, errors naming the file."""

from __future__ import annotations

import json

import pytest

from rsir.data.archive import open_archive
from rsir.data.bigearthnet_v1 import BIGEARTHNET_43, CLC43_TO_19, LABEL_CONVERSION, convert_labels
from rsir.data.formats import ingest
from rsir.data.nomenclature import BEN19
from rsir.errors import ItemError
from tests.data.fixtures_tiff import V1_S1, V1_S2, s2_band_value, write_bigearthnet_v1


def test_conversion_table_shape():
    # 43 original classes, 19 new ones; 11 originals are dropped (3..10, 30, 32, 37), the other 32 map once
    assert len(BIGEARTHNET_43) == 43 and len(LABEL_CONVERSION) == 19
    used = [i for olds in LABEL_CONVERSION for i in olds]
    assert len(used) == len(set(used)) == 32
    assert sorted(set(range(43)) - set(used)) == [3, 4, 5, 6, 7, 8, 9, 10, 30, 32, 37]
    assert CLC43_TO_19["Moors and heathland"] == CLC43_TO_19["Sclerophyllous vegetation"] == \
        "Moors, heathland and sclerophyllous vegetation"
    assert CLC43_TO_19["Transitional woodland/shrub"] == "Transitional woodland, shrub"
    assert set(CLC43_TO_19.values()) == set(BEN19.classes)


def test_convert_labels_by_hand():
    assert convert_labels(["Peatbogs", "Inland marshes", "Airports"]) == ["Inland wetlands"]
    assert convert_labels(["Estuaries", "Continuous urban fabric"]) == ["Urban fabric", "Marine waters"]
    with pytest.raises(ItemError, match="Urban"):
        convert_labels(["Urban"], "p", "p/p_labels_metadata.json")


def test_ingest_fixture(tmp_path):
    src = write_bigearthnet_v1(tmp_path / "src")
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "train.csv").write_text(f"{V1_S2[0]}\n")
    (splits / "test.csv").write_text(f"{V1_S2[1]}\n")
    a = open_archive(ingest(src, "bigearthnet-v1", tmp_path / "a", {"splits": str(splits)}, progress=False).path)
    # 2 S2 patches, S1 #0 pairs with S2 #0; S1 #1's S2 patch is absent so it is an item of its own
    assert a.ids == [V1_S2[0], V1_S2[1], V1_S1[1]]
    cat = a.catalog.set_index("id")
    assert list(cat.loc[V1_S2[0], "labels"]) == ["Urban fabric", "Arable land"]
    assert list(cat.loc[V1_S2[1], "labels"]) == ["Natural grassland and sparsely vegetated areas", "Marine waters"]
    assert "Road and rail networks and associated land" in list(cat.loc[V1_S2[0], "labels_43"])
    assert cat.loc[V1_S2[0], "s1_id"] == V1_S1[0] and list(cat.loc[V1_S2[0], "modalities"]) == ["s1", "s2"]
    assert cat["split"].tolist() == ["train", "test", ""]
    assert cat.loc[V1_S2[0], "date"] == "2017-06-13T10:10:31" and cat.loc[V1_S2[0], "tile"] == "33UUP"
    assert cat.loc[V1_S2[0], "crs"] == "EPSG:32633" and 13.4 < cat.loc[V1_S2[0], "lon"] < 13.6
    b09 = a.get(V1_S2[1], "s2")["B09"]
    assert b09.shape == (20, 20) and int(b09.min()) == s2_band_value("B09", 1)


def test_unknown_label_names_the_json(tmp_path):
    src = write_bigearthnet_v1(tmp_path / "src")
    j = src / "BigEarthNet-v1.0" / V1_S2[1] / f"{V1_S2[1]}_labels_metadata.json"
    d = json.loads(j.read_text())
    d["labels"] = ["Not a class"]
    j.write_text(json.dumps(d))
    with pytest.raises(ItemError, match=f"{V1_S2[1]}_labels_metadata.json"):
        ingest(src, "bigearthnet-v1", tmp_path / "a", progress=False)


def test_corrupt_band_names_the_file(tmp_path):
    src = write_bigearthnet_v1(tmp_path / "src")
    (src / "BigEarthNet-v1.0" / V1_S2[0] / f"{V1_S2[0]}_B11.tif").write_bytes(b"not a tiff")
    with pytest.raises(ItemError, match=f"{V1_S2[0]}_B11.tif"):
        ingest(src, "bigearthnet-v1", tmp_path / "a", progress=False)
