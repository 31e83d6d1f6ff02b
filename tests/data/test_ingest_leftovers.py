"""An ingest killed with SIGKILL leaves a hidden .NAME.partial-PID copy; the next ingest and `rsir doctor` clean it.

Only copies whose writing process is gone are removed: a live writer's copy stays, and a PID that was reused by a
process started after the copy was written counts as gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rsir.cli import main
from rsir.data.archive import open_archive
from rsir.errors import ArchiveError
from rsir.leftovers import find_leftovers, leftovers_in, writer_alive
from tests.data.fixtures_tiff import write_tif

ROOT = Path(__file__).resolve().parents[2]


def _source(root: Path, n: int = 30) -> Path:
    for k in range(n):
        write_tif(root / f"img{k:03d}.tif", np.full((3, 16, 16), k, np.uint16), x0=390000.0 + 160 * k)
    return root


# A real `rsir ingest` in its own process, slowed to 0.2 s per file so that it is still running when killed.
_SLOW_INGEST = """
import sys, time
import rsir.data.tiffio as t
_read = t.read_raster
def slow(*a, **k):
    time.sleep(0.2)
    return _read(*a, **k)
t.read_raster = slow
from rsir.cli import main
sys.exit(main(["ingest", sys.argv[1], "--format", "geotiff", "--out", sys.argv[2], "--quiet"]))
"""


def _kill_ingest_midway(src: Path, out: Path) -> tuple[int, Path]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_INGEST, str(src), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120

    def partial_copy() -> Path | None:  # rsir.storage names it .NAME.partial-PID-NS
        found = sorted(out.parent.glob(f".{out.name}.partial-{proc.pid}-*"))
        return found[0] if found and (found[0] / "patches.lmdb").exists() else None

    try:
        while partial_copy() is None:
            if proc.poll() is not None:
                raise AssertionError(f"ingest ended before it was killed: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("ingest did not start within 120 s")
            time.sleep(0.05)
        time.sleep(0.5)  # a few items into the store
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    partial = partial_copy()
    assert partial is not None and partial.is_dir() and not out.exists()
    return proc.pid, partial


@pytest.mark.slow
def test_sigkilled_ingest_is_cleaned_by_the_next_ingest_and_by_doctor(tmp_path, capsys):
    src = _source(tmp_path / "src")
    out = tmp_path / "archives" / "a"
    pid, partial = _kill_ingest_midway(src, out)
    out.mkdir()  # a folder without manifest at --out: opening it points at the copy beside it
    with pytest.raises(ArchiveError, match=rf"\.a\.partial-{pid}-\d+ beside it; `rsir doctor"):
        open_archive(out)
    out.rmdir()
    # the next ingest to the same --out removes the copy of the dead process, and says so
    assert main(["ingest", str(src), "--format", "geotiff", "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"note: removed {partial.name} (" in err and f"process {pid} is gone" in err
    assert not partial.exists() and len(open_archive(out)) == 30

    # a copy of another target stays, is mentioned by the ingest next to it, listed and removed by rsir doctor
    pid2, partial2 = _kill_ingest_midway(src, tmp_path / "archives" / "b")
    assert main(["ingest", str(src), "--format", "geotiff", "--out", str(tmp_path / "archives" / "c"),
                 "--quiet", "--limit", "2"]) == 0
    err = capsys.readouterr().err
    assert "1 other leftover(s) of interrupted writes" in err and partial2.name in err
    assert partial2.is_dir()
    assert main(["doctor", str(tmp_path)]) == 1
    text = capsys.readouterr().out
    assert partial2.name in text and "stale: its process is gone" in text and "--fix" in text
    assert main(["doctor", str(tmp_path), "--fix"]) == 0
    assert "removed 1 stale leftover(s)" in capsys.readouterr().out and not partial2.exists()
    assert main(["doctor", str(tmp_path)]) == 0
    assert "no leftovers" in capsys.readouterr().out
    assert len(open_archive(out)) == 30 and len(open_archive(tmp_path / "archives" / "c")) == 2


def test_only_copies_of_dead_writers_are_removed(tmp_path, capsys):
    me = os.getpid()
    live = tmp_path / f".x.partial-{me}"  # this process is running and started before the copy was written
    live.mkdir()
    (live / "data.mdb").write_bytes(b"\0" * 1000)
    reused = tmp_path / f".y.partial-{me}"  # same PID, but the copy predates this process: the PID was reused
    reused.mkdir()
    os.utime(reused, (946684800, 946684800))  # 2000-01-01
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = tmp_path / "sub" / f".z.old-{child.pid}"
    dead.mkdir(parents=True)
    tmpfile = tmp_path / f".manifest.json.tmp-{child.pid}"
    tmpfile.write_text("{}")
    assert writer_alive(me, time.time()) and not writer_alive(me, 946684800.0)
    state = {lo.path.name: lo.stale for lo in find_leftovers(tmp_path)}
    assert state == {live.name: False, reused.name: True, tmpfile.name: True, dead.name: True}
    assert [lo.size for lo in leftovers_in(tmp_path, "x")] == [1000]
    assert main(["doctor", str(tmp_path), "--fix"]) == 0
    out = capsys.readouterr().out
    assert "removed 3 stale leftover(s)" in out and "1 in use left alone" in out
    assert live.is_dir() and not reused.exists() and not dead.exists() and not tmpfile.exists()
    # ordinary hidden files and folders are not leftovers
    (tmp_path / ".git").mkdir()
    (tmp_path / ".partial-notes").write_text("x")
    assert [lo.path.name for lo in find_leftovers(tmp_path)] == [live.name]
