"""The annotation mode and relevance feedback over HTTP: token on writes, 404 / 409 / 422 for bad answers, a
round in the background that swaps the model (results move, the version changes), Rocchio re-ranking checked
against the engine, marks stored as pairs, and every acknowledged answer found after SIGKILL of the server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from rsir.feedback.rocchio import rocchio
from rsir.feedback.store import AnnotationStore
from rsir.service.app import create_app

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def client(sim_float: tuple[Path, Path], tmp_path: Path) -> TestClient:
    arc, idx = sim_float
    copy = tmp_path / "idx"
    shutil.copytree(idx, copy)
    return TestClient(create_app(arc, copy, token=TOKEN, annotate=True))


def _wait_round(c: TestClient, timeout: float = 120) -> dict[str, Any]:
    t0 = time.time()
    while time.time() - t0 < timeout:
        st = c.get("/api/annotate/status").json()
        if st["running_round"] is None:
            return st
        time.sleep(0.1)
    raise AssertionError("the round did not finish")


def test_annotation_round_trip(client: TestClient) -> None:
    c = client
    st = c.get("/api/annotate/status").json()
    assert st["model_version"] is None and st["labelled"] == 0
    assert c.post("/api/annotate/round", json={"budget": 16}).status_code == 401
    assert c.post("/api/annotate/round", json={"budget": 16}, headers={"Authorization": "Bearer nope"}
                  ).status_code == 403
    assert c.post("/api/annotate/round", json={"strategy": "greedy"}, headers=AUTH).status_code == 422
    r = c.post("/api/annotate/round", json={"strategy": "random", "budget": 16}, headers=AUTH)
    assert r.status_code == 202, r.text
    st = _wait_round(c)
    assert st["pending"] == 16 and st["model_version"] is None
    # a round while one runs: 409 (one is held open in the store here)
    ctl = c.app.state.annotation  # type: ignore[attr-defined]
    rid = ctl.session.store.start_round("random", 1, "someone")
    assert c.post("/api/annotate/round", json={}, headers=AUTH).status_code == 409
    ctl.session.store.finish_round(rid)
    pairs = c.get("/api/annotate/next", params={"n": 50}).json()["pairs"]
    assert len(pairs) == 16 and "labels" not in pairs[0]["a"] and pairs[0]["a"]["quicklook"]
    assert "labels" in c.get("/api/annotate/next", params={"labels": "true"}).json()["pairs"][0]["b"]
    # bad answers: unknown pair 404, second answer 409, nonsense 422; nothing stored by them
    assert c.post("/api/annotate/answer", json={"query_id": 99999, "answer": "similar"}, headers=AUTH
                  ).status_code == 404
    assert c.post("/api/annotate/answer", json={"query_id": pairs[0]["query_id"], "answer": "maybe"},
                  headers=AUTH).status_code == 422
    assert c.post("/api/annotate/answer", json={"query_id": pairs[0]["query_id"], "answer": "similar"}
                  ).status_code == 401
    arc = ctl.session.archive
    lab = {i: set(np.flatnonzero(arc.labels[p]).tolist()) for p, i in enumerate(ctl.session.ids)}
    for p in pairs:
        sim = bool(lab[p["a"]["id"]] & lab[p["b"]["id"]])
        r = c.post("/api/annotate/answer", json={"query_id": p["query_id"],
                                                 "answer": "similar" if sim else "not_similar"}, headers=AUTH)
        assert r.status_code == 201, r.text
    assert c.post("/api/annotate/answer", json={"query_id": pairs[0]["query_id"], "answer": "similar"},
                  headers=AUTH).status_code == 409
    assert ctl.session.store.count() == 16
    # a round retrains in the background, the new model replaces the old one and the results move
    query = ctl.session.ids[ctl.session.archive.split_positions("test")[0]]
    before = [h["id"] for h in c.post("/api/search/id", json={"id": query, "k": 10}).json()["results"]]
    assert c.post("/api/annotate/round", json={"budget": 8}, headers=AUTH).status_code == 202
    st = _wait_round(c)
    assert st["model_version"] == 1 and st["serving_model_version"] == 1 and st["pending"] == 8
    assert "map@20" in st["model_metrics"]
    after = c.post("/api/search/id", json={"id": query, "k": 10}).json()
    assert after["metric"] == "l2" and [h["id"] for h in after["results"]] != before


def test_feedback_search_and_marks(client: TestClient) -> None:
    c = client
    eng = c.app.state.service.engine  # type: ignore[attr-defined]
    ids = c.app.state.annotation.session.ids  # type: ignore[attr-defined]
    q = ids[0]
    first = c.post("/api/search/id", json={"id": q, "k": 10}).json()["results"]
    rel, nrel = [first[3]["id"], first[5]["id"]], [first[0]["id"]]
    body = {"id": q, "relevant": rel, "not_relevant": nrel, "k": 10}
    got = c.post("/api/feedback/search", json=body).json()
    assert got["mode"] == "feedback" and q not in [h["id"] for h in got["results"]]
    moved = rocchio(eng.vectors([q])[0], eng.vectors(rel), eng.vectors(nrel), eng.metric)
    ref = eng.search_vector(moved, 10, exclude=eng.position(q))
    assert [h["id"] for h in got["results"]] == ref.ids
    # marks need the token, are stored as pairs once, and unknown ids are 404 with nothing stored
    assert c.post("/api/feedback/marks", json=body).status_code == 401
    r = c.post("/api/feedback/marks", json=body, headers=AUTH)
    assert r.status_code == 201 and r.json()["stored"] == 3
    assert c.post("/api/feedback/marks", json=body, headers=AUTH).json() == {"stored": 0, "already_answered": 3,
                                                                            "labelled": 3}
    bad = {**body, "relevant": ["no-such-item"]}
    assert c.post("/api/feedback/marks", json=bad, headers=AUTH).status_code == 404
    assert c.post("/api/feedback/search", json=bad).status_code == 404
    both = {**body, "relevant": rel, "not_relevant": rel[:1]}
    assert c.post("/api/feedback/marks", json=both, headers=AUTH).status_code == 422
    store = c.app.state.annotation.session.store  # type: ignore[attr-defined]
    pairs = {(a.a, a.b): a.similar for a in store.answers()}
    assert pairs == {tuple(sorted((q, i))): True for i in rel} | {tuple(sorted((q, i))): False for i in nrel}
    assert {a.source for a in store.answers()} == {"feedback"}


_SERVER = """
import sys, uvicorn
from rsir.service.app import create_app
app = create_app(sys.argv[1], sys.argv[2], token=sys.argv[3], annotate=True)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[4]), log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_acknowledged_answers_survive_sigkill_of_the_server(sim_float: tuple[Path, Path], tmp_path: Path) -> None:
    arc, idx = sim_float
    copy = tmp_path / "idx"
    shutil.copytree(idx, copy)
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(arc), str(copy), TOKEN, str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as h:
            for _ in range(600):
                try:
                    if h.get("/api/annotate/status").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            assert h.post("/api/annotate/round", json={"strategy": "random", "budget": 200}, headers=AUTH
                          ).status_code == 202
            while h.get("/api/annotate/status").json()["running_round"] is not None:
                time.sleep(0.2)
            pairs = h.get("/api/annotate/next", params={"n": 50}).json()["pairs"]
            acked = []
            for k, p in enumerate(pairs):
                if k == 30:
                    os.kill(proc.pid, signal.SIGKILL)  # in the middle of the stream
                try:
                    r = h.post("/api/annotate/answer", json={"query_id": p["query_id"], "answer": "similar"},
                               headers=AUTH)
                except httpx.TransportError:
                    break
                if r.status_code == 201:
                    acked.append(p["query_id"])
    finally:
        proc.kill()
        proc.wait()
    assert len(acked) >= 30
    stored = {a.query_id for a in AnnotationStore(copy.with_name("idx.annotations.sqlite")).answers()}
    assert set(acked) <= stored


def test_searches_answer_while_a_round_trains(client: TestClient) -> None:
    c = client
    ctl = c.app.state.annotation  # type: ignore[attr-defined]
    s = ctl.session
    s.store.add_pairs([(s.ids[i], s.ids[i + 1], i % 2 == 0) for i in range(0, 40, 2)], "alice")
    gate, entered = threading.Event(), threading.Event()
    real = s.train

    def slow_train(rid: int | None) -> Any:
        entered.set()
        assert gate.wait(60)
        return real(rid)

    s.train = slow_train  # type: ignore[method-assign]
    q = s.ids[5]
    before = c.post("/api/search/id", json={"id": q, "k": 5}).json()
    assert c.post("/api/annotate/round", json={"budget": 3}, headers=AUTH).status_code == 202
    assert entered.wait(60)
    # the round is running (training held at the gate): searches answer with the old model, rounds are refused
    during = c.post("/api/search/id", json={"id": q, "k": 5})
    assert during.status_code == 200 and during.json()["results"] == before["results"]
    assert c.get("/api/annotate/status").json()["running_round"] is not None
    assert c.post("/api/annotate/round", json={}, headers=AUTH).status_code == 409
    gate.set()
    st = _wait_round(c)
    assert st["serving_model_version"] == 1
    assert c.post("/api/search/id", json={"id": q, "k": 5}).json()["metric"] == "l2"


def test_feedback_search_on_binary_codes_without_annotate(sim_float: tuple[Path, Path]) -> None:
    arc, idx = sim_float
    c = TestClient(create_app(arc, idx.with_name("idx-lsh")))
    assert c.get("/api/annotate/status").status_code == 404  # no annotation mode
    eng = c.app.state.service.engine  # type: ignore[attr-defined]
    q = str(eng.table.ids[7])
    first = c.post("/api/search/id", json={"id": q, "k": 10}).json()["results"]
    rel, nrel = [first[2]["id"], first[6]["id"]], [first[0]["id"]]
    got = c.post("/api/feedback/search", json={"id": q, "relevant": rel, "not_relevant": nrel, "k": 10}).json()
    assert got["metric"] == "hamming" and got["mode"] == "feedback"
    moved = rocchio(eng.vectors([q])[0], eng.vectors(rel), eng.vectors(nrel), "hamming")
    assert moved.dtype == np.uint8 and moved.shape == (4,)
    assert [h["id"] for h in got["results"]] == eng.search_vector(moved, 10, exclude=eng.position(q)).ids
    assert c.post("/api/feedback/marks", json={"id": q, "relevant": rel}).status_code == 404  # needs --annotate


def test_serve_annotate_on_postgresql(sim_float: tuple[Path, Path], tmp_path: Path, pg_server: Any) -> None:
    """`rsir serve --annotate --annotation-db URL`: the page's answers go to the PostgreSQL database."""
    from rsir.service.app import CollectionSpec, create_multi_app

    arc, idx = sim_float
    shutil.copytree(idx, tmp_path / "idx")
    idx = tmp_path / "idx"
    url = pg_server.create_database()
    try:
        app = create_multi_app([CollectionSpec("sim", arc, idx)], token=TOKEN, annotate=True, annotation_db=url)
        c = TestClient(app)
        st = c.get("/api/annotate/status").json()
        assert st["db"].startswith("postgresql+psycopg://") and st["labelled"] == 0
        assert c.post("/api/annotate/round", json={"strategy": "random", "budget": 3}, headers=AUTH).status_code == 202
        _wait_round(c)
        q = c.get("/api/annotate/next").json()["pairs"][0]
        assert c.post("/api/annotate/answer", json={"query_id": q["query_id"], "answer": "similar"},
                      headers=AUTH).status_code == 201
        assert c.post("/api/annotate/answer", json={"query_id": q["query_id"], "answer": "similar"},
                      headers=AUTH).status_code == 409
        assert [(a.a, a.similar) for a in AnnotationStore(url).answers()] == [(min(q["a"]["id"], q["b"]["id"]), True)]
        assert not Path(str(idx) + ".annotations.sqlite").exists()
    finally:
        pg_server.drop_database(url)
