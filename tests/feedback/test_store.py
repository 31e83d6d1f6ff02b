"""The annotation store: schema, pairs, rounds, duplicates, unknown pairs, concurrent writers, damaged files,
durability of acknowledged answers across SIGKILL, Parquet export.

The tests that take ``store_target`` run twice: on an SQLite file and on a fresh database of a throw-away
PostgreSQL server (tests/feedback/pg.py; skipped, with the reason, where no server binary or driver is here)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rsir.feedback import AnnotationConflict, FeedbackError, UnknownPair
from rsir.feedback.store import DB_NAME, AnnotationStore, normalise_pair

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_wal_mode_and_folder_default(tmp_path: Path) -> None:
    store = AnnotationStore(tmp_path)
    assert store.path == tmp_path / DB_NAME
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "1"


def test_pairs_are_unordered_and_answered_once(store_target: str) -> None:
    store = AnnotationStore(store_target)
    ans = store.add_pair("b", "a", True, "alice")
    assert (ans.a, ans.b, ans.similar, ans.who, ans.source) == ("a", "b", True, "alice", "feedback")
    with pytest.raises(AnnotationConflict, match="already answered"):
        store.add_pair("a", "b", False, "bob")
    assert store.count() == 1
    assert store.labelled_pairs() == (["a"], ["b"], [1])
    # all or nothing: one duplicate in a batch keeps the whole batch out
    with pytest.raises(AnnotationConflict):
        store.add_pairs([("c", "d", False), ("a", "b", True)], "bob")
    assert store.count() == 1
    got = store.add_pairs([("c", "d", False), ("a", "b", True)], "bob", skip_duplicates=True)
    assert [(g.a, g.b) for g in got] == [("c", "d")]


@pytest.mark.parametrize("a,b,msg", [("x", "x", "itself"), ("", "y", "not an item id"), (3, "y", "not an item id"),
                                     ("x" * 300, "y", "not an item id")])
def test_bad_pairs(a: object, b: object, msg: str) -> None:
    with pytest.raises(FeedbackError, match=msg):
        normalise_pair(a, b)


def test_bad_answers(store_target: str) -> None:
    store = AnnotationStore(store_target)
    with pytest.raises(FeedbackError, match="similar must be"):
        store.add_pair("a", "b", "yes", "alice")  # type: ignore[arg-type]
    with pytest.raises(FeedbackError, match="who"):
        store.add_pair("a", "b", True, "  ")
    with pytest.raises(FeedbackError, match="source"):
        store.add_pair("a", "b", True, "alice", source="guess")
    assert store.count() == 0


def test_rounds_queries_and_answers(store_target: str) -> None:
    store = AnnotationStore(store_target)
    store.add_pair("p", "q", True, "alice")
    r = store.start_round("anneal-mgue", 3)
    with pytest.raises(AnnotationConflict, match="still running"):
        store.start_round("random", 3)
    ids = store.add_queries(r, [("b", "a"), ("q", "p"), ("c", "d")], scores=[0.1, 0.2, 0.3])
    assert len(ids) == 2  # (p, q) is answered already
    assert store.add_queries(r, [("a", "b")]) == []  # already pending
    pend = store.pending(10)
    assert [(p["a"], p["b"]) for p in pend] == [("a", "b"), ("c", "d")]
    ans = store.answer(ids[0], False, "bob", model_version=1)
    assert (ans.a, ans.b, ans.similar, ans.round, ans.source, ans.query_id) == ("a", "b", False, r, "anneal", ids[0])
    with pytest.raises(AnnotationConflict):
        store.answer(ids[0], True, "carol")
    with pytest.raises(UnknownPair, match="does not exist"):
        store.answer(9999, True, "carol")
    with pytest.raises(UnknownPair):
        store.add_queries(9999, [("x", "y")])
    assert [(p["a"], p["b"]) for p in store.pending(10)] == [("c", "d")]
    store.finish_round(r, model_version=1)
    with pytest.raises(AnnotationConflict, match="not running"):
        store.finish_round(r)
    assert store.running_round() is None
    assert store.rounds()[0]["status"] == "done"
    r2 = store.start_round("random", 1)
    store.finish_round(r2, error="boom")
    assert store.rounds()[1]["status"] == "failed"
    v = store.register_model("models/v1", r, 2, {"map@20": 0.5})
    assert store.current_model() is not None and store.current_model()["version"] == v  # type: ignore[index]
    assert store.current_model()["metrics"] == {"map@20": 0.5}  # type: ignore[index]


def _writer(path: str, worker: int, n: int, shared: int) -> None:
    store = AnnotationStore(path)
    for i in range(n):
        store.add_pair(f"w{worker}-{i}", f"x{i}", i % 2 == 0, f"worker{worker}")
    for i in range(shared):  # the same pairs from every worker: exactly one answer each must win
        try:
            store.add_pair(f"s{i}", f"t{i}", True, f"worker{worker}")
        except AnnotationConflict:
            pass


def test_concurrent_writers_processes_and_threads(store_target: str) -> None:
    path = store_target
    AnnotationStore(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 40, 20)) for w in range(3)]
    for p in procs:
        p.start()
    threads = [threading.Thread(target=_writer, args=(path, 10 + w, 40, 20)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = AnnotationStore(path)
    rows = store.answers()
    assert len(rows) == 5 * 40 + 20
    assert len({(r.a, r.b) for r in rows}) == len(rows)
    for w in (0, 1, 2, 10, 11):
        mine = [r for r in rows if r.who == f"worker{w}" and r.a.startswith(f"w{w}-")]
        assert len(mine) == 40 and all(r.similar == (int(r.a.split("-")[1]) % 2 == 0) for r in mine)


def _start_round(path: str, q: mp.Queue) -> None:  # type: ignore[type-arg]
    try:
        q.put(AnnotationStore(path).start_round("random", 1))
    except AnnotationConflict:
        q.put("conflict")


def test_two_rounds_started_together_one_wins(store_target: str) -> None:
    path = store_target
    AnnotationStore(path)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_start_round, args=(path, q)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    got = sorted(str(q.get()) for _ in procs)
    assert got.count("conflict") == 3
    assert len(AnnotationStore(path).rounds()) == 1


def _sql(path: Path, stmt: str) -> None:
    con = sqlite3.connect(path)
    con.execute(stmt)
    con.commit()
    con.close()


def test_damaged_and_foreign_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(FeedbackError, match="junk.sqlite: not an annotation database"):
        AnnotationStore(junk)
    foreign = tmp_path / "foreign.sqlite"
    _sql(foreign, "CREATE TABLE users (name TEXT)")
    with pytest.raises(FeedbackError, match="something else"):
        AnnotationStore(foreign)
    newer = tmp_path / "newer.sqlite"
    AnnotationStore(newer)
    _sql(newer, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(FeedbackError, match="newer"):
        AnnotationStore(newer)
    with pytest.raises(FeedbackError, match="does not exist"):
        AnnotationStore(tmp_path / "no" / "such" / "a.sqlite")
    # a file whose header survived but whose pages were overwritten
    good = tmp_path / "good.sqlite"
    s = AnnotationStore(good)
    s.add_pairs([(f"a{i}", f"b{i}", True) for i in range(500)], "alice")
    _sql(good, "PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(good.read_bytes())
    data[4096:] = b"\xff" * (len(data) - 4096)
    good.write_bytes(bytes(data))
    with pytest.raises(FeedbackError, match="good.sqlite"):
        AnnotationStore(good).answers()


_STREAM = """
import sys
from rsir.feedback.store import AnnotationStore
s = AnnotationStore(sys.argv[1])
i = 0
while True:
    a = s.add_pair(f"q{i}", f"r{i}", i % 3 == 0, "stream")
    print(a.a, flush=True)
    i += 1
"""


def test_acknowledged_answers_survive_sigkill(store_target: str) -> None:
    path = store_target
    AnnotationStore(path)
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.Popen([sys.executable, "-c", _STREAM, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    acked = []
    deadline = time.time() + 30
    while len(acked) < 60 and time.time() < deadline:
        line = proc.stdout.readline()
        if line:
            acked.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    acked += [ln.strip() for ln in proc.stdout.read().splitlines() if ln.strip()]
    assert len(acked) >= 60
    stored = {a.a for a in AnnotationStore(path).answers()}
    assert set(acked) <= stored


def test_export_parquet(store_target: str, tmp_path: Path) -> None:
    store = AnnotationStore(store_target)
    store.add_pairs([("a", "b", True), ("c", "d", False)], "alice", source="oracle", round_id=None)
    out = store.export_parquet(tmp_path / "pairs.parquet")
    t = pq.read_table(out).to_pydict()
    assert t["a"] == ["a", "c"] and t["similar"] == [True, False] and t["source"] == ["oracle", "oracle"]
    assert t["who"] == ["alice", "alice"] and t["round"] == [None, None]


def test_pair_order_is_by_code_point(store_target: str) -> None:
    """Upper-case ids sort before lower-case ones in Python; the database's CHECK (a < b) must agree whatever
    its locale (PostgreSQL compares the id columns with the C collation)."""
    store = AnnotationStore(store_target)
    ans = store.add_pair("a-1", "B-2", True, "alice")
    assert (ans.a, ans.b) == ("B-2", "a-1")
    r = store.start_round("random", 2)
    ids = store.add_queries(r, [("z", "Z"), ("é", "e")])
    assert [(q["a"], q["b"]) for q in store.pending(5)] == [("Z", "z"), ("e", "é")]
    assert store.answer(ids[0], False, "bob").a == "Z"


def test_same_schema_on_both_backends(store_target: str) -> None:
    """Both backends hold the five tables of store.metadata with the same columns."""
    import sqlalchemy as sa

    from rsir.feedback.store import metadata

    store = AnnotationStore(store_target)
    insp = sa.inspect(store.engine)
    assert set(insp.get_table_names()) >= set(metadata.tables)
    for name, table in metadata.tables.items():
        assert [c["name"] for c in insp.get_columns(name)] == [c.name for c in table.columns]
    assert any(ix["name"] == "one_running_round" and ix["unique"] for ix in insp.get_indexes("rounds"))


def test_urls_and_unsupported_backends(tmp_path: Path) -> None:
    store = AnnotationStore(f"sqlite:///{tmp_path / 'u.sqlite'}")
    assert store.path == tmp_path / "u.sqlite" and store.backend == "sqlite"
    with pytest.raises(FeedbackError, match="SQLite or PostgreSQL"):
        AnnotationStore("mysql://u:secret@localhost/db")
    from rsir.feedback.store import database_url

    assert database_url("postgresql://u:pw@h/db").drivername == "postgresql+psycopg"
    # a server that is not there: a one-line error without the password
    with pytest.raises(FeedbackError, match="cannot open") as e:
        AnnotationStore(f"postgresql+psycopg://u:secret@/db?host={tmp_path}&port=1", timeout=2)
    assert "secret" not in str(e.value)


def test_pip_installed_server() -> None:
    """The PostgreSQL server of the pip package pgserver (dev extras) runs the store too, so the PostgreSQL
    tests need no system package."""
    from tests.feedback.pg import PgServer

    server = PgServer(system=False)
    reason = server.start()
    if reason is not None:
        pytest.skip(f"no pip-installed PostgreSQL server: {reason}")
    try:
        assert server.bin is not None and "pgserver" in str(server.bin)
        url = server.create_database()
        store = AnnotationStore(url)
        store.add_pairs([("a", "B", True), ("c", "d", False)], "alice")
        assert [(a.a, a.b, a.similar) for a in AnnotationStore(url).answers()] == [("B", "a", True), ("c", "d", False)]
    finally:
        server.stop()
