"""The page over a cross-modal (SS-CM) index in headless Chromium: a Sentinel-1 query (archive patch or uploaded
GeoTIFF) answered with Sentinel-2 results, the radar quicklook beside the optical ones, the direction named."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rsir.cli import main
from rsir.data.archive import open_archive
from rsir.methods.sscm import SSCMOptions, train_sscm
from rsir.query import SearchEngine
from rsir.service.app import create_app
from rsir.train.loop import TrainConfig
from tests.data.archive_helpers import write_tiny_archive
from tests.data.fixtures_tiff import write_tif
from tests.service.live import serve_in_thread
from tests.service.test_browser import _shot, browser  # noqa: F401  (the Chromium fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def xserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SearchEngine, Path]]:
    root = tmp_path_factory.mktemp("xweb")
    apath = write_tiny_archive(root / "arch", n=30, size=12)
    model, _ = train_sscm(open_archive(apath), root / "m", TrainConfig(epochs=1, batch_size=6, progress=False,
                                                                      num_workers=0, selection_fraction=0),
                          SSCMOptions(bits=16, width=8, blocks=(1, 1), hidden=16))
    assert main(["index", str(apath), "--model", str(model), "--out", str(root / "i"), "--no-progress"]) == 0
    engine = SearchEngine.open(root / "i")
    with serve_in_thread(create_app(engine=engine)) as url:
        yield url, engine, apath


@pytest.fixture
def xpage(browser, xserver):  # type: ignore[no-untyped-def]  # noqa: F811
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.route("**/*", lambda route: route.continue_() if route.request.url.startswith(xserver[0])
             else route.abort())
    pg.goto(xserver[0] + "/")
    pg.wait_for_selector("#browse-grid img")
    yield pg
    assert errors == []
    ctx.close()


def test_s1_patch_finds_s2_patches(xpage, xserver) -> None:  # type: ignore[no-untyped-def]
    _, engine, _ = xserver
    assert xpage.is_visible("#from-row")
    assert xpage.input_value("#from-modality") == "s1" and xpage.input_value("#target-modality") == "s2"
    qid = xpage.get_attribute("#browse-grid img >> nth=2", "data-id")
    xpage.click("#browse-grid img >> nth=2")
    xpage.wait_for_selector("#results .card")
    assert xpage.get_attribute("#direction", "data-direction") == "s1->s2"
    assert "S1 radar → S2 optical" in xpage.inner_text("#direction")
    assert "modality=s1" in xpage.get_attribute("#query-img", "src")  # the radar quicklook of the query
    srcs = xpage.eval_on_selector_all("#results .card img", "els => els.map(e => e.getAttribute('src'))")
    assert srcs and all("modality=s2" in s for s in srcs)  # optical results beside it
    shown = xpage.eval_on_selector_all("#results .card", "els => els.map(e => e.dataset.id)")
    assert shown == engine.search_id(qid, k=20, from_="s1", target="s2").ids
    _shot(xpage, "crossmodal-s1-s2")
    xpage.select_option("#target-modality", "s1")  # the same query, now S1 -> S1
    xpage.wait_for_function("document.querySelector('#direction').dataset.direction === 's1->s1'")


def test_s1_geotiff_upload(xpage, xserver, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, engine, apath = xserver
    a = open_archive(apath)
    b = a.get(4, "s1")
    tif = write_tif(tmp_path / "s1_patch.tif", np.stack([b["VV"], b["VH"]]).astype(np.float32))
    xpage.click("#tab-upload")
    xpage.set_input_files("#upload-file", str(tif))
    xpage.click("#upload-btn")
    xpage.wait_for_selector("#direction")
    assert xpage.get_attribute("#direction", "data-direction") == "s1->s2"
    assert xpage.get_attribute("#query-img", "src").startswith("data:image/png")
    shown = xpage.eval_on_selector_all("#results .card", "els => els.map(e => e.dataset.id)")
    assert shown == engine.search_id(a.ids[4], k=20, from_="s1", target="s2").ids
    _shot(xpage, "crossmodal-upload")
    # linear power instead of dB: the page shows the one-line reason
    lin = write_tif(tmp_path / "linear.tif", (10 ** (np.stack([b["VV"], b["VH"]]) / 10)).astype(np.float32))
    xpage.set_input_files("#upload-file", str(lin))
    xpage.click("#upload-btn")
    xpage.wait_for_selector("#error:not(.hidden)")
    assert "linear power" in xpage.inner_text("#error")
