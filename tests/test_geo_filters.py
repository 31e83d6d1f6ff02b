"""Location and time as search inputs: near a point, in a box (across the antimeridian too), a season or months,
combined with image and text queries, applied inside the search (a filtered ranking is the unfiltered one with
the failing items removed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rsir.cli import main
from rsir.data.archive import ArchiveWriter, open_archive
from rsir.data.bands import s2_spec
from rsir.data.nomenclature import BEN19
from rsir.pipeline import build_index
from rsir.query import Filters, QueryError, SearchEngine

# (lon, lat, date): Berlin area, Vienna, Cape Town (south), Fiji on both sides of 180, one without date
PLACES = [(13.40, 52.52, "2020-01-10"), (13.50, 52.45, "2020-07-03"), (13.38, 52.60, "2020-12-24"),
          (16.37, 48.21, "2021-04-01"), (18.42, -33.92, "2020-07-15"), (18.50, -33.90, "2021-01-20"),
          (179.9, -17.0, "2019-10-10"), (-179.9, -17.1, "2019-11-11"), (13.41, 52.51, "")]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> SearchEngine:
    root = tmp_path_factory.mktemp("geo")
    spec = s2_spec(12)
    rng = np.random.default_rng(3)
    with ArchiveWriter(root / "arch", [spec], BEN19, "test") as w:
        for k in range(45):
            lon, lat, date = PLACES[k % len(PLACES)]
            d = 0.001 * (k // len(PLACES))
            w.add(f"p{k:02d}", {"lon": lon + d, "lat": lat, "date": date,
                                "bbox": [lon + d - 0.005, lat - 0.005, lon + d + 0.005, lat + 0.005],
                                "labels": [BEN19.classes[k % 5]], "split": "test"},
                  {"s2": {b: rng.integers(0, 10000, sh, dtype=np.uint16) for b, sh in spec.shapes.items()}})
    build_index(root / "arch", root / "idx", method="lsh", bits=32, progress=False)
    return SearchEngine.open(root / "idx")


def _cosine_law_km(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    # an independent formula (spherical law of cosines) for the great-circle distance
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return 6371.0088 * math.acos(max(-1.0, min(1.0, c)))


def _passing(engine: SearchEngine, f: Filters) -> list[str]:
    mask = engine.filter_mask(f)
    assert mask is not None
    return [engine.table.ids[p] for p in np.flatnonzero(mask)]


def test_near_equals_a_hand_distance(engine: SearchEngine) -> None:
    for lon0, lat0, km in ((13.4, 52.5, 15.0), (18.4, -33.9, 5.0), (180.0, -17.05, 30.0)):
        got = _passing(engine, Filters(near=[lon0, lat0, km]))
        a = open_archive(engine.archive.path)
        want = [r.id for r in a.catalog.itertuples() if _cosine_law_km(lon0, lat0, r.lon, r.lat) <= km]
        assert got == want and got
    # Fiji: both sides of the antimeridian are near (180, -17.05)
    assert {engine.table.lon[engine.position(i)] > 0 for i in _passing(engine, Filters(near=[180, -17.05, 30]))} \
        == {True, False}


def test_box_across_antimeridian_and_seasons(engine: SearchEngine) -> None:
    fiji = _passing(engine, Filters(bbox=[179.0, -18.0, -179.0, -16.0]))
    assert fiji and all(abs(engine.table.lon[engine.position(i)]) > 179 for i in fiji)
    # summer: June-August in the north, December-February in the south; undated items never pass
    summer = _passing(engine, Filters(season="summer"))
    for i in summer:
        p = engine.position(i)
        m, lat = int(engine.table.date[p][5:7]), engine.table.lat[p]
        assert (m in (6, 7, 8)) if lat > 0 else (m in (12, 1, 2))
    want = [f"p{k:02d}" for k in range(45) if PLACES[k % 9][2] and (
        int(PLACES[k % 9][2][5:7]) in ((6, 7, 8) if PLACES[k % 9][1] > 0 else (12, 1, 2)))]
    assert summer == want
    assert _passing(engine, Filters(months=[12, 1])) == [f"p{k:02d}" for k in range(45) if k % 9 in (0, 2, 5)]
    with pytest.raises(QueryError, match="unknown season"):
        engine.filter_mask(Filters(season="monsoon"))
    with pytest.raises(QueryError, match="near"):
        engine.filter_mask(Filters(near=[13, 95, 5]))


def test_filters_apply_inside_the_ranking(engine: SearchEngine) -> None:
    f = Filters(near=[13.4, 52.5, 20.0], season="winter")
    full = engine.search_id("p03", k=44)
    got = engine.search_id("p03", k=10, filters=f)
    ok = set(_passing(engine, f))
    assert got.ids == [h.id for h in full.hits if h.id in ok][:10] and got.matching == len(ok)
    img = {b: np.asarray(a) for b, a in engine.archive.get("p09", "s2").items()}
    r = engine.search(image=img, k=5, filters={"bbox": [13.0, 52.0, 14.0, 53.0], "months": [1, 7]})
    assert r.hits[0].id == "p09" and all(h.item["lon"] < 14 and h.item["date"][5:7] in ("01", "07") for h in r.hits)
    t, _ = engine.search_text("coniferous forest", k=50, filters=Filters(near=[18.4, -33.9, 10.0]))
    assert {h.id for h in t.hits} <= set(_passing(engine, Filters(near=[18.4, -33.9, 10.0])))


def test_cli_location_and_time(engine: SearchEngine, capsys: pytest.CaptureFixture[str]) -> None:
    idx = str(engine.index_dir.path)
    assert main(["search", idx, "--id", "p00", "-k", "5", "--near", "13.4,52.5,20", "--season", "winter",
                 "--json"]) == 0
    import json

    res = json.loads(capsys.readouterr().out)
    assert res["matching"] == len(_passing(engine, Filters(near=[13.4, 52.5, 20], season="winter")))
    assert main(["search", idx, "--text", "arable land", "--bbox", "16,48,17,49", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "query text 'arable land'" in out and "  p12  Arable land" in out  # the one Vienna item with that label
    assert main(["search", idx, "--id", "p00", "--near", "13.4,52.5"]) == 2
    assert "--near '13.4,52.5': expected 3 comma-separated numbers" in capsys.readouterr().err


def test_api_filters(engine: SearchEngine, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from rsir.service.app import create_app

    c = TestClient(create_app(engine=engine))
    f = {"near": [18.4, -33.9, 10.0], "season": "winter"}
    r = c.post("/api/search/id", json={"id": "p00", "k": 20, "filters": f}).json()
    assert [x["id"] for x in r["results"]] == engine.search_id("p00", 20, filters=Filters(**f)).ids
    assert c.post("/api/search/id", json={"id": "p00", "filters": {"season": "monsoon"}}).status_code == 422
    assert c.post("/api/search/id", json={"id": "p00", "filters": {"months": [13]}}).status_code == 422
    assert c.post("/api/search/id", json={"id": "p00", "filters": {"near": [1, 2]}}).status_code == 422
