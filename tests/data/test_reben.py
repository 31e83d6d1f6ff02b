"""reBEN LMDB reader: the real sample from ../shared/data (skipped when absent)."""

from __future__ import annotations

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
