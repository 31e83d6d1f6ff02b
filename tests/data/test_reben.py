"""reBEN LMDB reader: the real sample from ../shared/data (skipped when absent)."""

from __future__ import annotations

import pytest

from rsir.data.archive import open_archive
from rsir.data.formats import ingest
from rsir.data.nomenclature import BEN19
from tests.conftest import shared_path


def test_ingest_real_reben_sample(tmp_path):
    src = shared_path("reben-sample")
    rep = ingest(src, "reben", tmp_path / "reben", progress=False)
    assert rep.n_items == 24 and not rep.skipped
    a = open_archive(rep.path)
    assert set(a.modalities) == {"s2", "s1"}
    assert a.catalog["split"].value_counts().to_dict() == {"train": 8, "validation": 8, "test": 8}
    for labs in a.catalog["labels"]:
        assert len(labs) >= 1 and set(labs) <= set(BEN19.classes)
    item = a.item(0)
    assert item["s1_id"].startswith("S1") and item["tile"] in {"33UUP", "35VNJ"} and item["date"].startswith("2017")
    assert a.get(0, "s2")["B01"].shape == (20, 20) and a.get(0, "s1")["VV"].shape == (120, 120)


# --- the committed fixture in the official layout (runs on every machine) -------------------------------------
def _fixture():
    from pathlib import Path

    return Path(__file__).parent / "fixtures" / "reben-mini"


def test_ingest_committed_reben_fixture(tmp_path):
    import numpy as np

    from tests.data.make_reben_fixture import ITEMS, s1_name, s1_value, s2_name, s2_value

    rep = ingest(_fixture(), "reben", tmp_path / "a", options={"size": "12"}, progress=False)
    assert rep.n_items == 4 and not rep.skipped
    a = open_archive(rep.path)
    assert set(a.modalities) == {"s2", "s1"}
    assert a.spec("s2").grid == (12, 12) and a.spec("s2").shapes["B01"] == (2, 2)
    for i, (tile, row, col, split, country, labels, snow, _cloud) in enumerate(ITEMS):
        pid = s2_name(tile, row, col)
        item = a.item(pid)
        assert item["split"] == split and item["country"] == country and list(item["labels"]) == labels
        assert item["s1_id"] == s1_name(tile, row, col) and item["tile"] == tile
        assert item["patch_row"] == row and item["patch_col"] == col and bool(item["contains_seasonal_snow"]) == snow
        s2, s1 = a.get(pid, "s2"), a.get(pid, "s1")
        for band in ("B01", "B05", "B08"):  # 60 m, 20 m and 10 m bands at their native sizes, exact values
            np.testing.assert_array_equal(s2[band], s2_value(i, band))
        np.testing.assert_array_equal(s1["VH"], s1_value(i, "VH"))
    # statistics come from the training split only (items 0 and 1)
    want = np.concatenate([s2_value(0, "B02").ravel(), s2_value(1, "B02").ravel()]).astype(np.float64)
    assert a.stats["s2"]["B02"]["mean"] == pytest.approx(want.mean())
    # the 20 m band is resampled bilinearly onto the 12 x 12 grid
    assert a.image(0, "s2", normalized=False).shape == (12, 12, 12)


def test_corrupt_reben_value_names_the_item(tmp_path):
    import shutil

    import lmdb

    from rsir.errors import ItemError
    from tests.data.make_reben_fixture import ITEMS, s2_name

    src = tmp_path / "reben"
    shutil.copytree(_fixture(), src)
    bad = s2_name(*ITEMS[2][:3])
    env = lmdb.open(str(src / "BigEarthNet-V2-LMDB"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(bad.encode(), b"\x00garbage, not safetensors")
    env.close()
    with pytest.raises(ItemError, match=bad):
        ingest(src, "reben", tmp_path / "a", options={"size": "12"}, progress=False)
    assert not (tmp_path / "a").exists()
    rep = ingest(src, "reben", tmp_path / "b", options={"size": "12"}, progress=False, skip_bad=True)
    assert rep.n_items == 3 and [s[0] for s in rep.skipped] == [bad]
