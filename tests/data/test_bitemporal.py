"""Bitemporal readers: LEVIR-CD / DSIFN pairs with masks and LEVIR-CC captions, on fixtures and real samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rsir.data.archive import open_archive
from rsir.data.formats import ingest, open_source
from rsir.errors import FormatError, ItemError
from tests.conftest import shared_path
from tests.data.fixtures_misc import rgb_picture, write_levir_cc, write_levir_cd


def test_levir_cd_pairs_masks_splits(tmp_path):
    root = write_levir_cd(tmp_path / "cd", ["train_1_0000_0000.png", "test_2_0000_0256.png", "x.png"], size=32)
    rep = ingest(root, "levir-cd", tmp_path / "a", {"size": "32"}, progress=False)
    a = open_archive(rep.path)
    assert rep.n_items == 6 and a.ids[:2] == ["test_2_0000_0256_A", "test_2_0000_0256_B"]
    ia, ib = a.item("train_1_0000_0000_A"), a.item("train_1_0000_0000_B")
    assert ia["partner_id"] == ib["id"] and ib["partner_id"] == ia["id"] and ia["pair_id"] == "train_1_0000_0000"
    # split from list/train.txt, then from the name prefix, else empty
    assert ia["split"] == "train" and a.item("test_2_0000_0256_A")["split"] == "test" and a.item("x_A")["split"] == ""
    assert ia["modalities"] == ["rgb"] and ib["modalities"] == ["mask", "rgb"]
    # label is 255 on the top quarter: 8 of 32 rows -> change fraction 0.25, stored as 0/1
    mask = a.get(ib["id"], "mask")["change"]
    assert mask[:8].all() and not mask[8:].any() and ib["change_fraction"] == 0.25
    np.testing.assert_array_equal(a.get("x_B", "rgb")["G"], rgb_picture(32, 32, 52)[..., 1])


def test_levir_cd_list_option_resize_and_errors(tmp_path):
    root = write_levir_cd(tmp_path / "cd", ["a.png", "b.png", "c.png"], size=32)
    src = open_source(root, "levir-cd", {"list": "demo", "size": "16"})
    items = list(src.items)
    assert [i.id for i in items] == ["a_A", "a_B", "b_A", "b_B"]
    out = items[1].load()
    assert out["rgb"]["R"].shape == (16, 16) and out["mask"]["change"].shape == (16, 16)
    assert items[1].meta["native_height"] == 32 and out["mask"]["change"][:4].all()  # nearest keeps 0/1
    with pytest.raises(FormatError, match="expected subfolders A/ and B/"):
        open_source(tmp_path, "levir-cd")
    (root / "B" / "c.png").unlink()
    (root / "A" / "b.png").write_bytes(b"broken")
    with pytest.raises(ItemError, match="b.png.*unreadable image"):
        ingest(root, "levir-cd", tmp_path / "x", progress=False)
    rep = ingest(root, "levir-cd", tmp_path / "y", progress=False, skip_bad=True)
    # a: 2 items; b: both unreadable; c: no B picture
    assert rep.n_items == 2 and any("no B picture" in p for _, p in rep.skipped)


def test_levir_cc_captions_and_pictures(tmp_path):
    root = write_levir_cc(tmp_path / "cc")
    rep = ingest(root, "levir-cc", tmp_path / "a", progress=False)
    a = open_archive(rep.path)
    assert rep.n_items == 8
    assert a.catalog["split"].value_counts().to_dict() == {"train": 4, "validation": 2, "test": 2}
    b = a.item("train_000002_B")
    assert b["captions"] == [f"a house appears {i}" for i in range(5)] and b["partner_id"] == "train_000002_A"
    assert a.item("train_000002_A")["captions"] == [] and b["modalities"] == ["rgb"]
    assert a.item("val_000001_B")["modalities"] == [] and math.isnan(a.item("val_000001_B")["change_fraction"])
    assert a.manifest["info"]["vocab_size"] == 5 and a.manifest["info"]["pairs_with_images"] == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "levir_cc_captions.json").write_text("{oops")
    with pytest.raises(FormatError, match="levir_cc_captions.json: not valid JSON"):
        open_source(bad, "levir-cc")


def test_real_levir_cd(tmp_path):
    src = shared_path("levir-cd-dsifn", "samples_LEVIR")
    rep = ingest(src, "levir-cd", tmp_path / "l", progress=False)
    a = open_archive(rep.path)
    # 12 pairs; test_113_0256 has no label and odd-sized RGBA pictures (768x384 and 768x383), resized
    assert rep.n_items == 24 and a.summary()["modalities"]["mask"]["items"] == 11
    it = a.item("test_113_0256_B")
    assert (it["native_height"], it["native_width"]) == (383, 768) and it["modalities"] == ["rgb"]
    assert a.item("train_386_0512_0768_B")["change_fraction"] == 0.0  # its label is all zero


def test_real_levir_cc(tmp_path):
    src = shared_path("levir-cc")
    s = open_source(src, "levir-cc")
    assert s.n_items == 2 * 10077 and s.info["pairs_with_images"] == 1
    items = {i.id: i for i in s.items}
    b = items["train_000016_B"]
    assert len(b.meta["captions"]) == 5 and b.meta["split"] == "train"
    assert b.load()["rgb"]["R"].shape == (256, 256)


def test_levir_cd_mask_captions_describe_the_changed_share(tmp_path):
    from rsir.data.pairs import bitemporal_pairs

    root = write_levir_cd(tmp_path / "cd", ["train_1_0000_0000.png", "test_2_0000_0256.png"], size=32)
    rep = ingest(root, "levir-cd", tmp_path / "a", {"size": "32", "captions": "mask", "what": "buildings"},
                 progress=False)
    a = open_archive(rep.path)
    pairs = {p.pair_id: p for p in bitemporal_pairs(a)}
    # the fixture's label marks the top quarter: 25 % changed, a "large" change of buildings
    caps = pairs["train_1_0000_0000"].captions
    assert caps[0] == "large changes in the buildings" and "about 25 percent" in caps[1]
    assert len(a.item("train_1_0000_0000_A")["captions"]) == 0  # the change is described on the later item
    assert a.manifest["info"]["captions"] == "derived from the change masks (not human)"
    with pytest.raises(FormatError, match="captions=human"):
        open_source(root, "levir-cd", {"captions": "human"})
