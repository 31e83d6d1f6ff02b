"""End-to-end tests of the web page in headless Chromium (Playwright) against a uvicorn server on loopback."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from rsir.data.archive import open_archive
from rsir.service.app import CollectionSpec, create_multi_app
from tests.data.archive_helpers import write_tiny_archive
from tests.service.live import serve_in_thread
from tests.service.test_api import make_searcher

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object]]:
    root = tmp_path_factory.mktemp("web")
    searcher = make_searcher(open_archive(write_tiny_archive(root / "arch", n=40, size=12)), root / "index")
    make_searcher(open_archive(write_tiny_archive(root / "other", n=25, size=12)), root / "other-index")
    app = create_multi_app([CollectionSpec("main", root / "arch", root / "index"),
                            CollectionSpec("other", root / "other", root / "other-index")])
    with serve_in_thread(app) as url:
        yield url, searcher


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        why = f"{CHROMIUM} is absent (install it with scripts/ensure_chromium.sh as root)"
        if os.environ.get("CI") == "true":  # in CI the browser tests must run, not skip
            pytest.fail(why)
        pytest.skip(why)
    if shutil.which("true") is None:  # pragma: no cover - always present on Debian
        pytest.skip("no coreutils")
    from playwright.sync_api import sync_playwright

    # launch() gives Chromium a fresh temporary profile (--user-data-dir) of its own
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@contextmanager
def page_on(browser, url: str):  # type: ignore[no-untyped-def]
    """A fresh page on the server at ``url``, offline apart from it; page errors fail the test."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    # the page must work with no internet: refuse anything that is not the local server
    pg.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
    pg.goto(url + "/")
    pg.wait_for_selector("#browse-grid img")
    yield pg
    assert errors == []
    ctx.close()


@pytest.fixture
def page(browser, server):  # type: ignore[no-untyped-def]
    with page_on(browser, server[0]) as pg:
        yield pg


def _shot(pg, name: str) -> Path:  # type: ignore[no-untyped-def]
    out = Path(os.environ.get("RSIR_SCREENSHOTS", "")) if os.environ.get("RSIR_SCREENSHOTS") else None
    d = out or Path(os.environ.get("TMPDIR", "/tmp")) / "rsir-screenshots"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def test_search_by_example_and_click_through(page, server) -> None:  # type: ignore[no-untyped-def]
    base, searcher = server
    assert "40 patches" in page.inner_text("#stats")
    first = page.locator("#browse-grid img").first
    qid = first.get_attribute("data-id")
    first.click()
    page.wait_for_selector("#results .card")
    assert page.inner_text("#mode") == "search by example"
    assert qid in page.inner_text("#query-title")
    shown = [c.get_attribute("data-id") for c in page.locator("#results .card").all()]
    want = searcher.search_id(qid, 20).ids
    assert shown == want
    assert page.inner_text("#query-time").endswith("ms")
    assert page.inner_text("#precision").endswith("%")
    assert page.locator("#map path.fp").count() >= 2  # footprints of the results (Leaflet vectors)
    _shot(page, "by-example")
    # click a result: it becomes the query
    second = page.locator("#results .card").nth(2)
    nid = second.get_attribute("data-id")
    second.click()
    page.wait_for_function(f"document.getElementById('query-title').textContent.includes('{nid}')")
    # the S1 toggle switches the quicklooks to Sentinel-1
    page.check("input[name=modality][value=s1]")
    page.wait_for_function("document.querySelector('#results .card img').src.includes('modality=s1')")
    # a label filter keeps only results with that label
    page.select_option("#f-labels", "Arable land")
    page.wait_for_function("[...document.querySelectorAll('#results .card')].every(c => "
                           "c.textContent.includes('Arable land'))")
    _shot(page, "filtered-s1")


def test_all_within_distance(page, server) -> None:  # type: ignore[no-untyped-def]
    """The radius control: every item within r bits, the count shown, paged by the Results size."""
    _, searcher = server
    qid = page.locator("#browse-grid img").first.get_attribute("data-id")
    vec = searcher.index.get([qid])[0]
    d_all = np.array(searcher.index.search(vec[None], len(searcher.index))[0][0])
    r = int(np.sort(d_all)[15])  # a radius that holds a dozen or more items besides the query
    want = searcher.search_id(qid, 10, radius=r)
    assert want.within is not None and want.within > 10  # more than one page
    page.select_option("#f-k", "10")
    page.check("#f-radius-on")
    page.fill("#f-radius", str(r))
    page.locator("#browse-grid img").first.click()
    page.wait_for_selector("#within-count")
    assert int(page.get_attribute("#within-count", "data-within")) == want.within
    assert f"within distance {r}" in page.inner_text("#summary")
    shown = [c.get_attribute("data-id") for c in page.locator("#results .card").all()]
    assert shown == want.ids
    dists = [int(t.split("=")[1]) for t in page.locator("#results .card .dist").all_inner_texts()]
    assert max(dists) <= r and dists == sorted(dists)
    page.click("#res-next")  # the second page of the same radius query
    page.wait_for_function("document.getElementById('res-info').textContent.startsWith('results 11')")
    second = [c.get_attribute("data-id") for c in page.locator("#results .card").all()]
    assert second == searcher.search_id(qid, 10, offset=10, radius=r).ids
    _shot(page, "radius")


def test_upload_npz(page, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, searcher = server
    buf = io.BytesIO()
    np.savez(buf, **searcher.archive.get("item017", "s2"))
    fp = tmp_path / "query.npz"
    fp.write_bytes(buf.getvalue())
    page.click("#tab-upload")
    page.set_input_files("#upload-file", str(fp))
    page.click("#upload-btn")
    page.wait_for_selector("#results .card")
    assert page.inner_text("#mode") == "search by upload"
    assert page.locator("#results .card").first.get_attribute("data-id") == "item017"
    assert "d=0" in page.locator("#results .card").first.inner_text()
    _shot(page, "upload")
    # a wrong file gives a readable error, not a broken page
    bad = tmp_path / "bad.npz"
    b2 = io.BytesIO()
    np.savez(b2, image=np.zeros((3, 12, 12), np.float32))
    bad.write_bytes(b2.getvalue())
    page.set_input_files("#upload-file", str(bad))
    page.click("#upload-btn")
    page.wait_for_selector("#error:not(.hidden)")
    assert "file has 3 bands" in page.inner_text("#error")


def test_text_query(page, server) -> None:  # type: ignore[no-untyped-def]
    page.click("#tab-text")
    page.fill("#text-input", "coniferous forest next to a lake")
    page.click("#text-btn")
    page.wait_for_selector("#results .card")
    assert page.inner_text("#mode") == "text (hybrid): answered by: label matcher (no text-image model)"
    assert not page.is_visible("#text-mode")  # no text-image model: no choice of who answers
    summary = page.inner_text("#summary")
    assert "Coniferous forest" in summary and "Inland waters" in summary
    for card in page.locator("#results .card").all():
        t = card.inner_text()
        assert "Coniferous forest" in t or "Inland waters" in t
    assert page.inner_text("#precision") == "100%"
    _shot(page, "text")


def test_collection_switcher(page, server) -> None:  # type: ignore[no-untyped-def]
    base, _ = server
    assert page.is_visible("#collection")
    assert page.locator("#collection option").count() == 2
    page.select_option("#collection", "/c/other/")
    page.wait_for_url(base + "/c/other/")
    page.wait_for_function("document.getElementById('stats').textContent.includes('25 patches')")
    page.wait_for_selector("#browse-grid img")
    page.locator("#browse-grid img").first.click()
    page.wait_for_selector("#results .card")
    src = page.locator("#results .card img").first.get_attribute("src")
    assert src.startswith("/c/other/api/items/")
    assert page.evaluate("document.querySelector('#results .card img').naturalWidth") > 0
    _shot(page, "collection-other")
