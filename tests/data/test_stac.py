"""STAC in: the reader on tiny catalogs in the real layouts (tests/data/make_stac_fixture.py writes them, with COGs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rsir.data.archive import open_archive
from rsir.data.formats import ingest, open_source
from rsir.data.stac import band_name
from rsir.errors import FormatError, ItemError
from tests.data import make_stac_fixture as fx


@pytest.fixture(scope="module")
def stac_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stac")
    fx.write_all(root)
    return root


def test_band_names_from_stac_entries() -> None:
    assert band_name("B2") == "B02" and band_name("b8a") == "B8A" and band_name("vv") == "VV"
    assert band_name(None, "swir16") == "B11" and band_name("red", "red") == "B04"
    # red edge is told apart by central wavelength
    assert [band_name(None, "rededge", w) for w in (0.704, 0.74, 0.783)] == ["B05", "B06", "B07"]
    assert band_name("foo", "bar") is None


def test_scenes_are_tiled_like_majortom(stac_dir: Path, tmp_path: Path) -> None:
    rep = ingest(stac_dir / "scenes", "stac", tmp_path / "a", {"patch-size": "12"}, progress=False)
    # scene 0: 36x36 -> 3x3 patches; scene 1: 30 rows x 40 cols -> 2x3 (edges dropped); the S1 item left out
    assert rep.n_items == 9 + 6
    assert any("1 of 3 STAC items have no s2 bands" in n for n in rep.notes)
    a = open_archive(tmp_path / "a")
    sid1 = fx.SCENES[1][0]
    assert a.ids[:9] == [f"{fx.SCENES[0][0]}_{r}_{c}" for r in range(3) for c in range(3)]
    assert a.ids[9:] == [f"{sid1}_{r}_{c}" for r in range(2) for c in range(3)]
    spec = a.spec("s2")
    assert spec.shapes["B02"] == (12, 12) and spec.shapes["B05"] == (6, 6) and spec.shapes["B01"] == (2, 2)
    # every band of a patch is the window of its own scene's band at its own resolution
    for pid in (f"{sid1}_1_2", f"{fx.SCENES[0][0]}_2_0"):
        s = 1 if pid.startswith(sid1) else 0
        _, h, w, *_ = fx.SCENES[s]
        r, c = map(int, pid.rsplit("_", 2)[1:])
        got = a.get(pid, "s2")
        for b, *_rest in fx.S2:
            k = 12 * 10 // fx.GSD[b]
            want = fx.band_array(s, b, h, w)[r * k:(r + 1) * k, c * k:(c + 1) * k]
            np.testing.assert_array_equal(got[b], want, err_msg=f"{pid} {b}")
    row = a.item(f"{sid1}_1_2")
    assert row["stac_id"] == sid1 and row["stac_collection"] == "sentinel-2-l2a"
    assert row["date"] == "2021-12-23T10:20:11Z" and row["tile"] == "33UUP" and row["cloud_cover"] == 4.5
    assert json.loads(row["stac_properties"])["platform"] == "sentinel-2a"
    # the patch's own transform: the scene's shifted by (2 cols, 1 row) of 12 px at 10 m
    x0, y0 = fx.SCENES[1][3], fx.SCENES[1][4]
    assert row["transform"] == [10.0, 0.0, x0 + 240, 0.0, -10.0, y0 - 120]
    geom = json.loads(row["geometry"])
    ring = np.asarray(geom["coordinates"][0])
    assert geom["type"] == "Polygon" and np.allclose(ring[0], ring[-1])
    lo, la = row["lon"], row["lat"]
    assert ring[:, 0].min() < lo < ring[:, 0].max() and ring[:, 1].min() < la < ring[:, 1].max()
    bb = row["bbox"]
    assert bb[0] <= ring[:, 0].min() + 1e-6 and bb[2] >= ring[:, 0].max() - 1e-6
    # 120 m at 48 N is about 0.0016 degrees of longitude
    assert 0.0012 < bb[2] - bb[0] < 0.0022


def test_sentinel1_items_and_linear_to_db(stac_dir: Path, tmp_path: Path) -> None:
    ingest(stac_dir / "scenes" / "catalog.json", "stac", tmp_path / "s1", {"modality": "s1", "patch-size": "12"},
           progress=False)
    a = open_archive(tmp_path / "s1")
    assert len(a) == 4 and list(a.modalities) == ["s1"]
    vv = a.get(f"{fx.S1_ITEM[0]}_1_1", "s1")["VV"]
    np.testing.assert_array_equal(vv, fx.s1_array("VV", 24, 24)[12:24, 12:24])
    src = open_source(stac_dir / "scenes", "stac", {"modality": "s1", "patch-size": "12", "s1-linear": "true"})
    got = next(iter(src.items)).load()["s1"]["VH"]
    want = 10 * np.log10(np.maximum(fx.s1_array("VH", 24, 24)[:12, :12], np.finfo(np.float32).tiny))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_item_collection_kept_whole_with_labels(stac_dir: Path, tmp_path: Path) -> None:
    rep = ingest(stac_dir / "patches.json", "stac", tmp_path / "p", {"patch-size": "0"}, progress=False)
    a = open_archive(tmp_path / "p")
    assert rep.n_items == 4 and a.ids == ["P0", "P1", "P2", "P3"]
    assert a.nomenclature.classes == ("forest", "urban", "water")
    src = json.loads((stac_dir / "patches.json").read_text())["features"]
    for f in src:
        row = a.item(f["id"])
        assert json.loads(row["geometry"]) == f["geometry"] and row["bbox"] == f["bbox"]
        assert row["labels"] == f["properties"]["rsir:labels"] and row["split"] == f["properties"]["rsir:split"]
    assert a.manifest["stats_split"] == "train"
    np.testing.assert_array_equal(a.get("P2", "s2")["B05"], fx.band_array(12, "B05", 12, 12))


def test_clear_errors(stac_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="divisible by 6"):
        open_source(stac_dir / "scenes", "stac", {"patch-size": "10"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="no catalog.json"):
        open_source(tmp_path / "empty", "stac", {})
    # an asset on a web server: named, not fetched
    doc = json.loads((stac_dir / "patches.json").read_text())
    doc["features"][1]["assets"]["B03"]["href"] = "https://example.invalid/B03.tif"
    (stac_dir / "remote.json").write_text(json.dumps(doc))
    with pytest.raises(ItemError, match="P1.*not a local file"):
        ingest(stac_dir / "remote.json", "stac", tmp_path / "r", {"patch-size": "0"}, progress=False)
    # a missing asset file names the item and the file
    doc = json.loads((stac_dir / "patches.json").read_text())
    doc["features"][2]["assets"]["B04"]["href"] = str(stac_dir / "patches" / "P2" / "nope.tif")
    (stac_dir / "missing.json").write_text(json.dumps(doc))
    with pytest.raises(ItemError, match="P2.*asset file missing"):
        ingest(stac_dir / "missing.json", "stac", tmp_path / "m", {"patch-size": "0"}, progress=False)
    rep = ingest(stac_dir / "missing.json", "stac", tmp_path / "m", {"patch-size": "0"}, progress=False,
                 skip_bad=True)
    assert rep.n_items == 3 and rep.skipped[0][0] == "P2"


def test_real_majortom_cell_through_stac_equals_the_majortom_reader(tmp_path: Path) -> None:
    """A STAC item written over a real Major-TOM cell (../shared/data) tiles into the same patches, pixels and
    footprints as the Major-TOM reader."""
    from tests.conftest import shared_path

    cell = shared_path("rico-hdl-tiffs", "Major-TOM-Core", "S2L2A", "0U", "0U_199R")
    product = next(p for p in cell.iterdir() if p.is_dir())
    assets = {b: {"href": str(product / f"{b}.tif"), "type": "image/tiff; application=geotiff", "roles": ["data"],
                  "eo:bands": [{"name": b}]} for b, *_ in fx.S2}
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "cell", "geometry": None, "links": [],
            "properties": {"datetime": "2022-07-06T08:56:11Z"}, "assets": assets}
    (tmp_path / "item.json").write_text(json.dumps(item))
    stac = open_source(tmp_path / "item.json", "stac", {"patch-size": "120"})
    mt = open_source(product, "majortom", {"patch-size": "120", "cloud": "false"})
    s_items, m_items = list(stac.items), list(mt.items)
    assert len(s_items) == len(m_items) == 64
    for k in (0, 9, 63):
        s, m = s_items[k], m_items[k]
        assert s.id.split("_", 1)[1] == m.id.rsplit("_", 2)[1] + "_" + m.id.rsplit("_", 2)[2]
        assert s.meta["transform"] == m.meta["transform"] and s.meta["crs"] == m.meta["crs"]
        assert np.allclose(s.meta["bbox"], m.meta["bbox"]) and s.meta["lon"] == pytest.approx(m.meta["lon"])
        sa, ma = s.load()["s2"], m.load()["s2"]
        for b in ma:
            np.testing.assert_array_equal(sa[b], ma[b], err_msg=f"{s.id} {b}")
