"""The page's map, box and point search, montage and code map in headless Chromium, against a uvicorn server on
loopback (no request may leave it: Leaflet and the country outlines are served by rsir)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rsir.data.archive import ArchiveWriter
from rsir.data.bands import s2_spec
from rsir.data.nomenclature import BEN19
from rsir.pipeline import build_index
from rsir.query import Filters, SearchEngine
from rsir.service.app import ServiceLimits, create_app
from tests.service.live import serve_in_thread
from tests.service.test_browser import _shot, browser  # noqa: F401  (the browser fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Berlin (winter and summer), Vienna (spring), Cape Town (southern summer = January)
PLACES = [(13.40, 52.52, "2020-01-10"), (13.50, 52.45, "2020-07-03"), (16.37, 48.21, "2021-04-01"),
          (18.42, -33.92, "2021-01-20")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SearchEngine]]:
    root = tmp_path_factory.mktemp("mapweb")
    spec = s2_spec(12)
    rng = np.random.default_rng(5)
    with ArchiveWriter(root / "arch", [spec], BEN19, "test") as w:
        for k in range(48):
            lon, lat, date = PLACES[k % 4]
            d = 0.01 * (k // 4)
            w.add(f"p{k:02d}", {"lon": lon + d, "lat": lat, "date": date, "split": "test",
                                "bbox": [lon + d - 0.004, lat - 0.003, lon + d + 0.004, lat + 0.003],
                                "labels": [BEN19.classes[k % 6]]},
                  {"s2": {b: rng.integers(0, 10000, sh, dtype=np.uint16) for b, sh in spec.shapes.items()}})
    build_index(root / "arch", root / "idx", method="lsh", bits=32, progress=False)
    eng = SearchEngine.open(root / "idx")
    with serve_in_thread(create_app(engine=eng, limits=ServiceLimits(codemap_points=40))) as url:
        yield url, eng


@pytest.fixture
def page(browser, server):  # type: ignore[no-untyped-def]  # noqa: F811
    ctx = browser.new_context(viewport={"width": 1400, "height": 1100})
    pg = ctx.new_page()
    errors: list[str] = []
    outside: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):  # type: ignore[no-untyped-def]
        if r.request.url.startswith(server[0]):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    pg.route("**/*", route)
    pg.goto(server[0] + "/")
    pg.wait_for_selector("#browse-grid img")
    # the country outlines come from the package: Natural Earth 1:50m has 241 countries
    pg.wait_for_function("document.getElementById('map').dataset.countries > 200")
    yield pg
    assert errors == [] and outside == []
    ctx.close()


def _ids(pg) -> list[str]:  # type: ignore[no-untyped-def]
    return [c.get_attribute("data-id") for c in pg.locator("#results .card").all()]


def _wait_matching(pg, n: int) -> None:  # type: ignore[no-untyped-def]
    # the summary of the answer to the latest request (earlier results may still be on the page before it)
    pg.wait_for_function(f"document.getElementById('summary').textContent.includes('{n} items pass the filters')")


def _set_view(pg, lat: float, lon: float, zoom: int) -> None:  # type: ignore[no-untyped-def]
    # let the last answer's fitBounds finish first, then move the map and wait until it is there
    pg.wait_for_load_state("networkidle")
    pg.wait_for_timeout(300)
    pg.evaluate(f"RsirMap._map().setView([{lat}, {lon}], {zoom}, {{animate: false}})")
    pg.wait_for_function(f"Math.abs(RsirMap._map().getCenter().lat - ({lat})) < 0.01 && "
                         f"RsirMap._map().getZoom() === {zoom}")


def _search(pg, qid: str) -> None:  # type: ignore[no-untyped-def]
    pg.evaluate(f"searchId('{qid}', 0)")
    pg.wait_for_function(f"document.getElementById('query-title').textContent.includes('{qid}')")


def test_footprints_in_sync_with_results(page, server) -> None:  # type: ignore[no-untyped-def]
    _, eng = server
    assert page.locator("#map.leaflet-container").count() == 1
    assert page.locator("#map .leaflet-overlay-pane path").count() > 200  # outlines drawn as vectors
    _search(page, "p05")
    assert _ids(page) == eng.search_id("p05", 20).ids
    # one footprint per result plus the query's
    assert page.locator("#map path.fp").count() == 20 and page.locator("#map path.fp-query").count() == 1
    # hovering a card highlights its footprint; hovering a footprint highlights its card
    card = page.locator("#results .card").nth(3)
    rid = card.get_attribute("data-id")
    card.hover()
    fp = page.locator(f'#map path.fp[data-id="{rid}"]')
    assert fp.get_attribute("stroke") == "#e8780c"
    page.mouse.move(5, 5)
    other = page.locator("#results .card").nth(6).get_attribute("data-id")
    page.locator(f'#map path.fp[data-id="{other}"]').dispatch_event("mouseover")
    assert "hl" in page.locator(f'#results .card[data-id="{other}"]').get_attribute("class")
    _shot(page, "map-results")
    # clicking a footprint searches with it
    page.locator(f'#map path.fp[data-id="{other}"]').dispatch_event("click")
    page.wait_for_function(f"document.getElementById('query-title').textContent.includes('{other}')")


def test_box_search_applies_inside_the_search(page, server) -> None:  # type: ignore[no-untyped-def]
    _, eng = server
    _search(page, "p00")
    _set_view(page, 52.48, 13.55, 10)
    page.click("#draw-box")
    box = page.locator("#map").bounding_box()
    m = page.evaluate("(() => { const m = RsirMap._map(); const a = m.latLngToContainerPoint([52.56, 13.42]);"
                      " const b = m.latLngToContainerPoint([52.40, 13.60]); return [a.x, a.y, b.x, b.y]; })()")
    page.mouse.move(box["x"] + m[0], box["y"] + m[1])
    page.mouse.down()
    page.mouse.move(box["x"] + (m[0] + m[2]) / 2, box["y"] + (m[1] + m[3]) / 2)
    page.mouse.move(box["x"] + m[2], box["y"] + m[3])
    page.mouse.up()
    page.wait_for_function("document.getElementById('geo-filter').textContent.startsWith('in box')")
    bbox = page.evaluate("RsirMap.filters().bbox")
    assert bbox[0] == pytest.approx(13.42, abs=0.01) and bbox[3] == pytest.approx(52.56, abs=0.01)
    want = eng.search_id("p00", 20, filters=Filters(bbox=bbox))
    _wait_matching(page, want.matching)
    assert _ids(page) == want.ids and 0 < want.matching < 47
    assert page.locator("#map path.geo-box").count() == 1
    _shot(page, "map-box")
    # a season on top of the box: Berlin winter only
    page.select_option("#f-season", "winter")
    want = eng.search_id("p00", 20, filters=Filters(bbox=bbox, season="winter"))
    _wait_matching(page, want.matching)
    assert _ids(page) == want.ids and want.matching < 24
    page.click("#clear-geo")
    page.wait_for_function("document.getElementById('geo-filter').textContent === 'anywhere'")


def test_near_point_with_text_query(page, server) -> None:  # type: ignore[no-untyped-def]
    _, eng = server
    page.click("#tab-text")
    page.fill("#text-input", "industrial areas, permanent crops or complex cultivation patterns")
    page.click("#text-btn")
    page.wait_for_selector("#results .card")
    _set_view(page, -33.9, 18.5, 9)
    page.fill("#near-km", "8")
    page.click("#near-btn")
    box = page.locator("#map").bounding_box()
    pt = page.evaluate("(() => { const p = RsirMap._map().latLngToContainerPoint([-33.92, 18.44]);"
                       " return [p.x, p.y]; })()")
    page.mouse.click(box["x"] + pt[0], box["y"] + pt[1])
    page.wait_for_function("document.getElementById('geo-filter').textContent.startsWith('within 8 km')")
    near = page.evaluate("RsirMap.filters().near")
    res, _ = eng.search_text("industrial areas, permanent crops or complex cultivation patterns", 20,
                             filters=Filters(near=near))
    _wait_matching(page, res.matching)
    assert _ids(page) == res.ids and res.hits
    assert all(h.item["lat"] < 0 for h in res.hits)
    assert page.locator("#map path.geo-near").count() == 1
    _shot(page, "map-near")


def test_montage_and_code_map(page, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, eng = server
    _search(page, "p02")
    page.click("#montage-btn")
    page.wait_for_selector("#montage-panel:not(.hidden)")
    page.wait_for_function("document.getElementById('montage-img').naturalWidth > 900")
    page.click("#codemap-btn")
    page.wait_for_function("document.getElementById('codemap').dataset.query", timeout=120_000)
    assert "40 codes" in page.inner_text("#codemap-info")
    # the query is on the map: its own point when it was sampled, else placed by openTSNE
    xy = [float(v) for v in page.evaluate("document.getElementById('codemap').dataset.query").split(",")]
    cm = page.evaluate("fetch('api/codemap').then(r => r.json())")
    own = [p for p in cm["points"] if p["id"] == "p02"]
    if own:
        assert xy == pytest.approx([own[0]["x"], own[0]["y"]], abs=1e-3)
    _shot(page, "montage-codemap")
    # an upload is placed too
    import io

    buf = io.BytesIO()
    np.savez(buf, **eng.archive.get("p07", "s2"))
    fp = tmp_path / "q.npz"
    fp.write_bytes(buf.getvalue())
    page.click("#tab-upload")
    page.set_input_files("#upload-file", str(fp))
    before = page.evaluate("document.getElementById('codemap').dataset.query")
    page.click("#upload-btn")
    page.wait_for_function(f"document.getElementById('codemap').dataset.query !== '{before}'")
    assert page.inner_text("#mode") == "search by upload"
    assert page.locator("#results .card").first.get_attribute("data-id") == "p07"
