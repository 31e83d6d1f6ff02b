"""The change routes of the service and the page's Change tab (issue 15)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from rsir.query.change import ChangeEngine
from rsir.service.app import ServiceLimits, create_app
from rsir.service.change import difference_image


@pytest.fixture(scope="module")
def client(change_setup: tuple[Path, Path, Path]) -> TestClient:
    arch, index, change = change_setup
    return TestClient(create_app(arch, index, change_index=change))


def test_text_search_returns_pairs_with_both_dates_and_the_difference(client, change_setup):
    info = client.get("/api/change").json()
    assert info["pairs"] >= 10 and info["captions"] >= info["pairs"] and info["bits"] == 16
    assert client.get("/api/stats").json()["change"] is True
    r = client.post("/api/change/search/text", json={"text": "the forest was cut down", "k": 4})
    assert r.status_code == 200
    body = r.json()
    assert body["mode"] == "text->pairs" and len(body["results"]) == 4
    # the same ranking as the engine's
    eng = ChangeEngine.open(change_setup[2], archive=change_setup[0])
    assert [h["pair_id"] for h in body["results"]] == eng.search_text("the forest was cut down", 4).ids
    first = body["results"][0]
    for key in ("before_quicklook", "after_quicklook", "difference"):
        png = client.get(first[key])
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png.content)).size[0] > 0
    r = client.post("/api/change/search/pair", json={"pair": first["after"], "k": 3})
    assert r.status_code == 200 and r.json()["query"]["pair"]["pair_id"] == first["pair_id"]
    assert all("text" in h for h in r.json()["results"])
    r = client.post("/api/change/search/pair", json={"pair": first["pair_id"], "k": 3, "target": "pairs"})
    assert r.status_code == 200 and first["pair_id"] not in [h["pair_id"] for h in r.json()["results"]]


def test_bad_change_requests_get_clear_errors(client):
    too_long = "x" * (ServiceLimits().max_text_chars + 1)
    assert client.post("/api/change/search/text", json={"text": too_long}).status_code == 422
    assert client.post("/api/change/search/text", json={"text": "   "}).status_code == 422
    r = client.post("/api/change/search/pair", json={"pair": "nope"})
    assert r.status_code == 404 and "pair 'nope'" in r.json()["detail"]
    assert client.post("/api/change/search/pair", json={"pair": "x", "target": "s2"}).status_code == 422
    assert client.post("/api/change/search/text", json={"text": "flood", "k": 10**6}).status_code == 422
    assert client.get("/api/change/pairs?limit=100000").status_code == 422
    assert client.get("/api/change/pairs/nope/difference.png").status_code == 404


def test_difference_image_marks_what_changed():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[1, 2] = (200, 10, 0)
    d = difference_image(a, b)
    assert d.shape == (4, 4, 3) and d[1, 2, 0] == 255 and d.sum() == 3 * 255


def test_without_a_change_index_there_are_no_change_routes(change_setup):
    arch, index, _ = change_setup
    c = TestClient(create_app(arch, index))
    assert c.get("/api/change").status_code == 404
    assert c.get("/api/stats").json()["change"] is False


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_searches_changes(change_setup, tmp_path):
    import os

    from tests.service.live import serve_in_thread
    from tests.service.test_browser import CHROMIUM, CHROMIUM_ARGS

    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is absent")
        pytest.skip(f"{CHROMIUM} is absent")
    from playwright.sync_api import sync_playwright

    arch, index, change = change_setup
    with serve_in_thread(create_app(arch, index, change_index=change)) as url, sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = b.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
        pg.goto(url + "/")
        pg.wait_for_selector("#tab-change:not(.hidden)")
        pg.click("#tab-change")
        pg.wait_for_selector("#change-grid img")
        pg.fill("#change-input", "new buildings on farmland")
        pg.click("#change-btn")
        pg.wait_for_selector(".pair-card")
        assert pg.inner_text("#mode") == "change: text → pairs"
        cards = pg.query_selector_all(".pair-card")
        assert len(cards) >= 1
        assert pg.query_selector(".pair-card .fb") is None  # relevance feedback marks items, not pairs
        for cls in ("before", "after", "diff"):  # before, after and difference images all loaded
            assert pg.eval_on_selector(f".pair-card img.{cls}", "e => e.complete && e.naturalWidth > 0")
        pg.click(".pair-card")
        pg.wait_for_selector(".sentences li")
        assert pg.inner_text("#mode") == "change: pair → sentences"
        pg.screenshot(path=str(tmp_path / "change.png"), full_page=True)
        b.close()
        assert errors == []
