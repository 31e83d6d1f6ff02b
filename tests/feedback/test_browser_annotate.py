"""The annotation mode in headless Chromium: start a round, annotate 20 pairs with the keyboard, run a round that
retrains in the background, see the model version change and the results of a search move; then relevance
feedback: mark results, search again, the marks stored as training pairs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rsir.data.archive import open_archive
from rsir.service.app import create_app
from tests.service.live import serve_in_thread
from tests.service.test_browser import browser, page  # noqa: F401 (fixtures, used with this module's server)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOKEN = "browser-token"


@pytest.fixture
def server(sim_float: tuple[Path, Path], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    arc, idx = sim_float
    copy = tmp_path / "idx"
    shutil.copytree(idx, copy)
    with serve_in_thread(create_app(arc, copy, token=TOKEN, annotate=True)) as url:
        yield url, arc


@pytest.fixture
def ann_page(page):  # type: ignore[no-untyped-def]  # noqa: F811
    """The search page of tests/service/test_browser.py (offline, no page errors) on this module's server."""
    page.wait_for_selector("#ann-panel:not(.hidden)")
    return page


def _shot(pg, name: str) -> None:  # type: ignore[no-untyped-def]
    d = Path(os.environ.get("RSIR_SCREENSHOTS") or Path(os.environ.get("TMPDIR", "/tmp")) / "rsir-screenshots")
    d.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(d / f"{name}.png"), full_page=True)


def _wait_idle(pg) -> None:  # type: ignore[no-untyped-def]
    pg.wait_for_function("document.getElementById('ann-progress').dataset.running === ''", timeout=120_000)


def test_annotate_20_pairs_round_and_feedback(ann_page, server) -> None:  # type: ignore[no-untyped-def]
    pg = ann_page
    arc = open_archive(server[1])
    labels = {str(i): set(np.flatnonzero(arc.labels[p]).tolist()) for p, i in enumerate(arc.ids)}
    pg.fill("#ann-token", TOKEN)
    pg.select_option("#ann-strategy", "random")
    pg.fill("#ann-budget", "24")
    pg.click("#ann-round")
    _wait_idle(pg)
    pg.wait_for_function("document.getElementById('ann-status').dataset.pending === '24'")
    assert pg.get_attribute("#ann-status", "data-version") == ""
    # a search before any model: results over the frozen features
    query = pg.locator("#browse-grid img").nth(3).get_attribute("data-id")
    pg.locator("#browse-grid img").nth(3).click()
    pg.wait_for_selector("#results .card")
    before = [c.get_attribute("data-id") for c in pg.locator("#results .card").all()]
    # annotate 20 pairs with the keyboard (answers from the labels), labels hidden on the page
    pg.click("#ann-open")
    pg.wait_for_selector("#ann-pair:not(.hidden)")
    assert "," not in pg.inner_text("#ann-a-id")
    _shot(pg, "annotate-pair")
    for n in range(20):
        pg.wait_for_function(f"document.getElementById('ann-count').textContent === '{n}'")
        a, b = pg.get_attribute("#ann-a", "data-id"), pg.get_attribute("#ann-b", "data-id")
        pg.keyboard.press("s" if labels[a] & labels[b] else "d")
    pg.wait_for_function("document.getElementById('ann-count').textContent === '20'")
    pg.wait_for_function("document.getElementById('ann-status').dataset.pending === '4'")
    # skip moves on without storing
    skipped = pg.get_attribute("#ann-pair", "data-query")
    pg.keyboard.press(" ")
    pg.wait_for_function(f"document.getElementById('ann-pair').dataset.query !== '{skipped}'")
    assert pg.inner_text("#ann-count") == "20"
    # a round: retrains in the background, the model version appears, the results move
    pg.select_option("#ann-strategy", "anneal-mgue")
    pg.fill("#ann-budget", "5")
    pg.click("#ann-round")
    _wait_idle(pg)
    pg.wait_for_function("document.getElementById('ann-status').dataset.version === '1'")
    assert "model v1" in pg.inner_text("#ann-status") and "20 answered" in pg.inner_text("#ann-status")
    pg.click("#ann-close")
    pg.locator("#browse-grid img").nth(3).click()
    pg.wait_for_function(f"document.getElementById('query-title').textContent.includes('{query}')")
    pg.wait_for_function("[...document.querySelectorAll('#results .card')].map(c => c.dataset.id).join() !== "
                         f"'{','.join(before)}'")
    after = [c.get_attribute("data-id") for c in pg.locator("#results .card").all()]
    assert after != before and "l2=" in pg.inner_text("#results")
    _shot(pg, "after-round")
    # relevance feedback: mark two relevant and one not, search again, the marks are stored as pairs
    cards = pg.locator("#results .card")
    cards.nth(2).locator(".fb-rel").click()
    cards.nth(4).locator(".fb-rel").click()
    cards.nth(0).locator(".fb-non").click()
    assert pg.inner_text("#fb-again") == "Search again with 3 marks"
    pg.click("#fb-again")
    pg.wait_for_function("document.getElementById('mode').textContent === 'relevance feedback'")
    pg.wait_for_function("document.getElementById('fb-info').textContent.startsWith('3 new training pairs')")
    pg.wait_for_function("document.getElementById('ann-status').textContent.startsWith('23 answered')")
    _shot(pg, "feedback")
