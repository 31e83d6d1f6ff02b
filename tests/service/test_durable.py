"""Durable adds and deletes: the journal format (torn tails, damage, compaction), the engine replay, and a real
``rsir serve`` process killed with SIGKILL in the middle of a stream of adds."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from rsir.data.archive import open_archive
from rsir.pipeline import build_index
from rsir.query import SearchEngine
from rsir.query.journal import (
    HEADER,
    JOURNAL_NAME,
    Journal,
    JournalError,
    Record,
    frame,
    live_records,
    scan,
)
from tests.data.archive_helpers import write_tiny_archive
from tests.service.live import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "durable-token"


def rec(i: int, op: str = "add") -> Record:
    if op == "delete":
        return Record("delete", f"x{i}")
    return Record("add", f"x{i}", np.full(8, i, dtype=np.uint8), ["Urban fabric"], {"split": "test"},
                  {"B02": np.full((4, 4), i, dtype=np.uint16)})


# -- the journal file ------------------------------------------------------------------------------------------
def test_records_round_trip_and_torn_tail_is_truncated(tmp_path: Path) -> None:
    j, old = Journal.open_writer(tmp_path)
    assert old == []
    for i in range(3):
        j.append(rec(i))
    j.append(rec(1, "delete"))
    j.close()
    records, end, size = scan(tmp_path / JOURNAL_NAME)
    assert [(r.op, r.id) for r in records] == [("add", "x0"), ("add", "x1"), ("add", "x2"), ("delete", "x1")]
    assert end == size
    assert records[2].vector.tolist() == [2] * 8 and records[2].bands["B02"].dtype == np.uint16
    assert records[0].labels == ["Urban fabric"] and records[0].meta == {"split": "test"}
    # a crash in the middle of an append: every prefix of a record is a torn tail, dropped and truncated
    full = (tmp_path / JOURNAL_NAME).read_bytes()
    extra = frame(rec(9))
    for cut in (1, 5, 12, 13, len(extra) // 2, len(extra) - 1):
        (tmp_path / JOURNAL_NAME).write_bytes(full + extra[:cut])
        assert len(scan(tmp_path / JOURNAL_NAME)[0]) == 4
        j, records = Journal.open_writer(tmp_path)
        j.close()
        assert len(records) == 4 and (tmp_path / JOURNAL_NAME).read_bytes() == full


def test_damage_before_complete_records_is_an_error(tmp_path: Path) -> None:
    j, _ = Journal.open_writer(tmp_path)
    for i in range(3):
        j.append(rec(i))
    j.close()
    data = bytearray((tmp_path / JOURNAL_NAME).read_bytes())
    data[len(HEADER) + 40] ^= 0xFF  # inside the first record's payload
    (tmp_path / JOURNAL_NAME).write_bytes(bytes(data))
    with pytest.raises(JournalError, match="damaged"):
        scan(tmp_path / JOURNAL_NAME)
    (tmp_path / JOURNAL_NAME).write_bytes(b"something else entirely")
    with pytest.raises(JournalError, match="not an rsir journal"):
        scan(tmp_path / JOURNAL_NAME)


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    j, _ = Journal.open_writer(tmp_path)
    with pytest.raises(JournalError, match="another process"):
        Journal.open_writer(tmp_path)
    j.close()
    Journal.open_writer(tmp_path)[0].close()


def test_live_records_keep_state_and_add_order() -> None:
    # base index holds a0, a1; x3 added, deleted, re-added: it now comes after x5
    records = [rec(3), Record("delete", "a0"), rec(5), rec(3, "delete"), rec(7), rec(3), rec(7, "delete"),
               Record("delete", "a0")]
    live = live_records(records, {"a0", "a1"})
    assert [(r.op, r.id) for r in live] == [("delete", "a0"), ("add", "x5"), ("add", "x3")]


def test_compaction_is_atomic_and_keeps_appending(tmp_path: Path) -> None:
    j, _ = Journal.open_writer(tmp_path)
    for i in range(5):
        j.append(rec(i))
    j.append(rec(2, "delete"))
    j.compact(live_records(scan(tmp_path / JOURNAL_NAME)[0], set()))
    j.append(rec(8))
    j.close()
    ids = [r.id for r in scan(tmp_path / JOURNAL_NAME)[0]]
    assert ids == ["x0", "x1", "x3", "x4", "x8"]
    assert [p.name for p in tmp_path.iterdir()] == [JOURNAL_NAME]  # no temporary file left


_APPENDER = """
import sys, numpy as np
from rsir.query.journal import Journal, Record
j, _ = Journal.open_writer(sys.argv[1])
big = {"B02": np.zeros((400, 400), dtype=np.uint16)}
i = 0
while True:
    j.append(Record("add", f"k{i}", np.full(8, i % 256, dtype=np.uint8), [], {}, big))
    print(i, flush=True)  # acknowledged only after the fsync
    i += 1
"""


def test_sigkill_during_appends_loses_no_acknowledged_record(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.Popen([sys.executable, "-c", _APPENDER, str(tmp_path)], stdout=subprocess.PIPE, env=env,
                         text=True)
    acked = []
    assert p.stdout is not None
    for line in p.stdout:
        acked.append(int(line))
        if len(acked) >= 25:
            break
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    acked += [int(x) for x in p.stdout.read().split()]
    records, _end, _size = scan(tmp_path / JOURNAL_NAME)
    got = [int(r.id[1:]) for r in records]
    # every acknowledged record is there, in order, complete; at most the one in flight besides
    assert got[:len(acked)] == acked and len(got) - len(acked) in (0, 1)
    assert all(r.bands is not None and r.bands["B02"].shape == (400, 400) for r in records)


# -- the engine over a journal ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("durable")
    arch = write_tiny_archive(root / "arch", n=24, size=12)
    build_index(open_archive(arch), root / "index", method="lsh", bits=64, progress=False)
    return arch, root / "index"


def _copy_index(built: tuple[Path, Path], tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "index"
    shutil.copytree(built[1], dst)
    return dst


def test_engine_replays_adds_and_deletes_in_order(built: tuple[Path, Path], tmp_path: Path) -> None:
    arch, _ = built
    idx = _copy_index(built, tmp_path)
    eng = SearchEngine.open(idx, archive=arch, durable=True)
    code = eng.index.get(["item005"])[0]
    eng.add_vector("new1", code, ["Urban fabric"], {"split": "test"})
    eng.add_vector("new2", code, [], {})
    eng.delete_item("item005")
    eng.delete_item("new1")
    eng.add_vector("new1", code, [], {"split": "train"})
    want = eng.search_vector(code, k=5).ids
    eng.close()
    again = SearchEngine.open(idx, archive=arch)  # a read-only opener replays too
    assert again.search_vector(code, k=5).ids == want
    assert want[:2] == ["new2", "new1"]  # equal distance 0: insertion order, new1's latest add is last
    assert "item005" not in again.table.pos and again.item_record(again.position("new1"))["split"] == "train"
    # the durable reopen compacts (7 records -> 1 delete + 2 adds) and states the same
    d = SearchEngine.open(idx, archive=arch, durable=True)
    assert len(scan(idx / JOURNAL_NAME)[0]) == 3
    assert d.search_vector(code, k=5).ids == want and len(d.index) == 24 + 2 - 1
    d.close()


# -- a real server, killed with SIGKILL in the middle of a stream of adds -------------------------------------------
def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _multipart(fields: dict[str, str], file_bytes: bytes) -> tuple[bytes, str]:
    b = uuid.uuid4().hex
    parts = [f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    parts.append(f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="a.npz"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n".encode() + file_bytes + b"\r\n")
    return b"".join(parts) + f"--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


def _request(url: str, method: str = "GET", body: bytes | None = None, ctype: str | None = None,
             timeout: float = 60) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _start(arch: Path, idx: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.Popen([sys.executable, "-m", "rsir", "serve", str(arch), "--index", str(idx), "--port", str(port),
                          "--token", TOKEN], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while time.time() < deadline:
        if p.poll() is not None:
            raise AssertionError(f"rsir serve exited: {p.stderr.read().decode()[-2000:] if p.stderr else ''}")
        try:
            if _request(f"http://127.0.0.1:{port}/api/health", timeout=1)[0] == 200:
                return p
        except OSError:
            time.sleep(0.2)
    p.kill()
    raise AssertionError("rsir serve did not start")


def test_server_killed_mid_stream_keeps_every_acknowledged_write(built: tuple[Path, Path], tmp_path: Path) -> None:
    arch, _ = built
    idx = _copy_index(built, tmp_path)
    archive = open_archive(arch)
    images = {f"up{i:02d}": archive.get(f"item{i % 24:03d}", "s2") for i in range(200)}
    port = free_port()
    server = _start(arch, idx, port)
    base = f"http://127.0.0.1:{port}"
    acked: list[str] = []
    deleted: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        for n, (item_id, bands) in enumerate(images.items()):
            if stop.is_set():
                return
            body, ctype = _multipart({"id": item_id, "labels": "Urban fabric", "split": "test"}, _npz(bands))
            try:
                # generous timeout: the first add loads the encoder, slow on a loaded machine; a timed-out
                # request would count as "not acknowledged" although the server may still apply it
                status, _ = _request(f"{base}/api/items", "POST", body, ctype, timeout=120)
            except OSError:
                return  # the server died mid-request: this one was not acknowledged
            if status == 201:
                acked.append(item_id)
            if n % 7 == 3 and acked:
                try:
                    if _request(f"{base}/api/items/{acked[0]}", "DELETE", timeout=120)[0] == 200:
                        deleted.append(acked.pop(0))
                except OSError:
                    return

    th = threading.Thread(target=stream)
    th.start()
    deadline = time.time() + 240  # generous: the machine may be loaded
    while (len(acked) < 8 or not deleted) and time.time() < deadline and th.is_alive():
        time.sleep(0.02)
    os.kill(server.pid, signal.SIGKILL)  # while the stream is still sending
    server.wait()
    stop.set()
    th.join(30)
    assert len(acked) >= 8 and deleted, (len(acked), deleted)
    sent = list(images)
    server = _start(arch, idx, port)
    try:
        for item_id in acked:
            status, item = _request(f"{base}/api/items/{item_id}")
            assert status == 200 and item["added"] and item["labels"] == ["Urban fabric"], item_id
            status, res = _request(f"{base}/api/search/id", "POST", json.dumps({"id": item_id, "k": 3,
                                   "include_query": True}).encode(), "application/json")
            assert status == 200 and res["results"][0]["distance"] == 0, item_id
        for item_id in deleted:
            assert _request(f"{base}/api/items/{item_id}")[0] == 404
        # nothing half-written: an unacknowledged item is either wholly there (it was journaled before the kill)
        # or absent; the index and the item table agree
        eng = SearchEngine.open(idx, archive=arch)
        extra = [i for i in sent if i in eng.table.pos and i not in acked]
        assert len(extra) <= 1
        assert sorted(map(str, eng.index.ids)) == sorted(eng.table.pos)
        stats = _request(f"{base}/api/stats")[1]
        assert stats["added_items_persist"] is True and stats["added"] == len(acked) + len(extra)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)


@pytest.mark.slow
def test_rsir_add_offline_journals_like_the_service(tmp_path: Path) -> None:
    from rsir.data.formats import ingest

    fixture = ROOT / "tests" / "data" / "fixtures" / "reben-mini"
    ingest(fixture, "reben", tmp_path / "arch", options={"size": "12"}, progress=False, limit=2)
    build_index(open_archive(tmp_path / "arch"), tmp_path / "index", method="lsh", bits=32, progress=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "rsir", "add", str(tmp_path / "arch"), str(tmp_path / "index"), str(fixture),
           "--format", "reben", "--option", "size=12"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "already in the archive" in r.stderr  # the first 2 are archive items
    r = subprocess.run(cmd + ["--skip-bad"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    eng = SearchEngine.open(tmp_path / "index", archive=tmp_path / "arch")
    full = open_archive(tmp_path / "arch")
    added = sorted(eng.table.added)
    assert len(added) == 2 and len(eng.index) == len(full) + len(added) == 4
    # an added item's journaled code is the code the encoder makes of its bands: it finds itself at distance 0
    for item in added:
        res = eng.search_id(item, k=1, include_query=True)
        assert res.hits[0].distance == 0 and res.hits[0].item["added"]
        assert res.hits[0].labels and res.hits[0].item["split"]
