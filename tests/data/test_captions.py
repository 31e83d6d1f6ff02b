"""Caption corpora reader: dataset JSON, COCO JSON, precomp text, pictures, on fixtures and the real samples."""

from __future__ import annotations

import numpy as np
import pytest

from rsir.data.archive import open_archive
from rsir.data.formats import ingest, open_source
from rsir.errors import FormatError, ItemError
from tests.conftest import shared_path
from tests.data.fixtures_misc import (
    rgb_picture,
    write_coco_json,
    write_dataset_json,
    write_picture,
    write_precomp,
)


def test_dataset_json_with_pictures(tmp_path):
    js = write_dataset_json(tmp_path / "dataset_rsicd.json")
    write_picture(tmp_path / "imgs" / "airport_1.jpg", rgb_picture(64, 64, 0))
    rep = ingest(js, "captions", tmp_path / "a", {"images": str(tmp_path / "imgs"), "size": "32"}, progress=False)
    a = open_archive(rep.path)
    assert a.ids == ["airport_1", "beach_7", "airport_2"]
    assert a.catalog["split"].tolist() == ["train", "validation", "train"]
    # the blank caption of airport_1 is dropped
    assert a.item("airport_1")["captions"] == ["many planes are parked ."]
    assert a.item("airport_1")["labels"] == ["airport"] and a.nomenclature.classes == ("airport", "beach")
    assert a.item("airport_1")["modalities"] == ["rgb"] and a.item("beach_7")["modalities"] == []
    assert a.get("airport_1", "rgb")["R"].shape == (32, 32)
    assert a.manifest["info"]["blank_captions_dropped"] == 1


def test_coco_folder_split_from_file_name(tmp_path):
    write_coco_json(tmp_path / "UCM" / "data_train_UCM.json", ["1.tif", "2.tif"], 1)
    write_coco_json(tmp_path / "UCM" / "data_val_UCM.json", ["9.tif"], 9)
    src = open_source(tmp_path / "UCM", "captions")
    items = list(src.items)
    assert [i.id for i in items] == ["1", "2", "9"] and src.modalities == []
    assert [i.meta["split"] for i in items] == ["train", "train", "validation"]
    assert items[2].meta["captions"] == ["caption 0 of 9.tif", "caption 1 of 9.tif"]
    assert items[0].load() == {}


def test_precomp_train_and_test_layouts(tmp_path):
    folder = write_precomp(tmp_path / "ucm_precomp")
    items = list(open_source(folder, "captions").items)
    assert [i.id for i in items] == ["1", "2", "7"]
    # train: caption i belongs to filename line i // 5; test: one filename line per caption
    assert items[0].meta["captions"] == [f"train cap {i}" for i in range(5)]
    assert items[1].meta["captions"] == [f"train cap {i}" for i in range(5, 10)]
    assert items[2].meta["captions"] == [f"test cap {i}" for i in range(5)] and items[2].meta["split"] == "test"


def test_errors(tmp_path):
    bad = tmp_path / "dataset_x.json"
    bad.write_text('{"images": [')
    with pytest.raises(FormatError, match="dataset_x.json: not valid JSON"):
        open_source(bad, "captions")
    folder = write_precomp(tmp_path / "p")
    (folder / "train_caps.txt").write_text("one\ntwo\nthree\n")
    with pytest.raises(FormatError, match="do not divide evenly"):
        open_source(folder, "captions")
    js = write_dataset_json(tmp_path / "d" / "dataset_rsicd.json")
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "beach_7.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ItemError, match="beach_7.jpg.*unreadable image"):
        ingest(js, "captions", tmp_path / "a", {"images": str(tmp_path / "imgs")}, progress=False)


def test_real_ucm_precomp_with_images(tmp_path):
    caps = shared_path("rs-captions", "ucm_precomp")
    imgs = shared_path("rs-caption-images")
    rep = ingest(caps, "captions", tmp_path / "u", {"images": str(imgs)}, progress=False)
    a = open_archive(rep.path)
    # 1680 train + 1050 / 5 = 210 test images; images 1-3 of UCM are in rs-caption-images/ucm
    assert rep.n_items == 1890 and a.catalog["split"].value_counts().to_dict() == {"train": 1680, "test": 210}
    assert sum(len(c) for c in a.catalog["captions"]) == 9450
    assert a.summary()["modalities"]["rgb"]["items"] == 3
    img = a.get("1", "rgb")
    assert img["R"].shape == (224, 224) and img["G"].dtype == np.uint8


def test_real_coco_json(tmp_path):
    js = shared_path("rs-caption-images", "coco_json", "data", "UCM_Captions")
    src = open_source(js, "captions")
    assert src.n_items == 1890
    first = next(iter(src.items))
    assert first.id == "1" and first.meta["split"] == "train" and len(first.meta["captions"]) == 5
