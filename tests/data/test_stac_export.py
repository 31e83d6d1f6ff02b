"""STAC out and the round trip: ingest a STAC ItemCollection, export the archive as a static catalog, validate it
with pystac (core schemas, offline), ingest the export again: same ids, geometries, labels and pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
from pystac.extensions.eo import EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.validation.stac_validator import JsonSchemaSTACValidator

from rsir.cli import main
from rsir.data.archive import open_archive
from rsir.data.formats import ingest
from rsir.data.stac_export import ExportError, export_stac, safe_name
from tests.data import make_stac_fixture as fx
from tests.data.archive_helpers import write_tiny_archive


@pytest.fixture(scope="module")
def patches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stacx")
    src = fx.write_patches(root)
    ingest(src, "stac", root / "arch", {"patch-size": "0"}, progress=False)
    return root


def _validate_offline(cat_path: Path) -> int:
    """Validate every object of a catalog against the STAC core schemas pystac ships (no network)."""
    v = JsonSchemaSTACValidator()
    cat = pystac.Catalog.from_file(str(cat_path))
    n = 0
    for root, _children, items in cat.walk():
        v.validate_core(root.to_dict(), root.STAC_OBJECT_TYPE, pystac.get_stac_version())
        for it in items:
            v.validate_core(it.to_dict(), pystac.STACObjectType.ITEM, pystac.get_stac_version())
            n += 1
    return n


def test_round_trip_ids_geometries_labels_pixels(patches: Path) -> None:
    arch = open_archive(patches / "arch")
    cat_path = export_stac(arch, patches / "out", assets="cog")
    assert _validate_offline(cat_path) == 4
    cat = pystac.Catalog.from_file(str(cat_path))
    items = {it.id: it for it in cat.get_items(recursive=True)}
    src = {f["id"]: f for f in json.loads((patches / "patches.json").read_text())["features"]}
    assert set(items) == set(src)
    for iid, f in src.items():
        it = items[iid]
        assert it.geometry == f["geometry"] and it.bbox == f["bbox"]
        assert it.datetime.isoformat().replace("+00:00", "Z") == f["properties"]["datetime"]
        assert it.properties["rsir:labels"] == f["properties"]["rsir:labels"]
        assert it.properties["platform"] == "sentinel-2a"  # the source's properties are kept
        # declared extensions, read back through pystac's extension classes
        assert ProjectionExtension.has_extension(it) and EOExtension.has_extension(it)
        assert ProjectionExtension.ext(it).code == "EPSG:32633" and ProjectionExtension.ext(it).shape == [12, 12]
        eo = EOExtension.ext(it.assets["B05"]).bands
        assert eo is not None and eo[0].common_name == "rededge" and eo[0].center_wavelength == 0.705
        assert ProjectionExtension.ext(it.assets["B05"]).shape == [6, 6]
        assert it.assets["thumbnail"].roles == ["thumbnail"]
    # every href is relative: the folder can move
    for p in (patches / "out").rglob("*.json"):
        for link in json.loads(p.read_text()).get("links", []):
            assert not link["href"].startswith("/"), (p, link)
    # ingest the export again: same ids, geometries, labels, dates and pixels
    ingest(patches / "out", "stac", patches / "again", {"patch-size": "0"}, progress=False)
    again = open_archive(patches / "again")
    assert again.ids == arch.ids
    for iid in arch.ids:
        a, b = arch.item(iid), again.item(iid)
        assert json.loads(a["geometry"]) == json.loads(b["geometry"]) and a["bbox"] == b["bbox"]
        assert a["labels"] == b["labels"] and a["date"] == b["date"] and a["transform"] == b["transform"]
        for band, x in arch.get(iid, "s2").items():
            np.testing.assert_array_equal(again.get(iid, "s2")[band], x)


def test_archive_without_stac_source(tmp_path: Path) -> None:
    # a simulated-style archive: no geometry column, lon/lat and a date per item, ids become folder names
    arch = open_archive(write_tiny_archive(tmp_path / "tiny", n=5, size=12))
    cat_path = export_stac(arch, tmp_path / "cat", assets="none", limit=3, collection_id="tiny set")
    assert _validate_offline(cat_path) == 3
    items = list(pystac.Catalog.from_file(str(cat_path)).get_items(recursive=True))
    assert [i.id for i in items] == ["item000", "item001", "item002"]
    assert items[1].geometry == {"type": "Point", "coordinates": [14.01, 47.0]}
    assert items[0].collection_id == safe_name("tiny set") == "tiny_set"
    with pytest.raises(ExportError, match="already exists"):
        export_stac(arch, tmp_path / "cat")
    with pytest.raises(ExportError, match="not a STAC catalog folder"):
        export_stac(arch, tmp_path / "tiny", overwrite=True)
    export_stac(arch, tmp_path / "cat", assets="none", overwrite=True)
    assert len(list(pystac.Catalog.from_file(str(cat_path)).get_items(recursive=True))) == 5


def test_unknown_dates_are_valid_stac(tmp_path: Path) -> None:
    from rsir.data.archive import ArchiveWriter
    from rsir.data.bands import s2_spec
    from rsir.data.nomenclature import Nomenclature

    spec = s2_spec(6)
    with ArchiveWriter(tmp_path / "nodate", [spec], Nomenclature("none", ()), "test") as w:
        w.add("x/1", {}, {"s2": {b: np.ones(sh, np.uint16) for b, sh in spec.shapes.items()}})
    cat_path = export_stac(open_archive(tmp_path / "nodate"), tmp_path / "c")
    assert _validate_offline(cat_path) == 1
    it = next(pystac.Catalog.from_file(str(cat_path)).get_items(recursive=True))
    assert it.id == "x/1" and it.datetime is None and it.properties["rsir:datetime_unknown"] is True
    assert it.geometry is None and (tmp_path / "c" / "nodate" / "x_1" / "thumbnail.png").exists()


def test_cli_export_and_search_geojson(patches: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(patches / "arch"), "--stac", str(patches / "cli-out"), "--assets", "none"]) == 0
    assert "wrote a STAC catalog of 4 items" in capsys.readouterr().out
    assert main(["index", str(patches / "arch"), "--out", str(patches / "idx"), "--method", "lsh",
                 "--bits", "16"]) == 0
    capsys.readouterr()
    assert main(["search", str(patches / "idx"), "--id", "P1", "-k", "3", "--format", "geojson"]) == 0
    fc = json.loads(capsys.readouterr().out)
    assert fc["type"] == "FeatureCollection" and fc["numberReturned"] == 3 and fc["numberMatched"] == 4
    assert [f["id"] for f in fc["features"]] and "P1" not in [f["id"] for f in fc["features"]]
    src = {f["id"]: f for f in json.loads((patches / "patches.json").read_text())["features"]}
    v = JsonSchemaSTACValidator()
    for r, f in enumerate(fc["features"], 1):
        assert f["geometry"] == src[f["id"]]["geometry"]
        assert f["properties"]["rsir:rank"] == r and isinstance(f["properties"]["rsir:distance"], int)
        assert f["properties"]["rsir:labels"] == src[f["id"]]["properties"]["rsir:labels"]
        v.validate_core(f, pystac.STACObjectType.ITEM, "1.1.0")
    assert fc["rsir:query"]["id"] == "P1" and fc["rsir:query"]["geometry"] == src["P1"]["geometry"]
