"""Leftovers of interrupted writes: hidden ``.NAME.partial-PID``, ``.NAME.old-PID`` and ``.NAME.tmp-PID`` entries.

Archives, indexes, models and reports are written to a hidden sibling named after the target and the writing
process (``.reben.partial-4242``, ``.index.partial-4242-<ns>``, ``.manifest.json.tmp-4242``) and renamed into
place when complete, so a crash never leaves a target that looks finished. A process killed with SIGKILL (or
a power cut) cannot delete its sibling, which then holds up to the whole archive's size on disk.

A leftover is *stale* when the process that wrote it is gone: no process has its PID, or the process that now
has that PID started after the leftover was last modified (the PID was reused; Linux, from /proc). Only stale
leftovers are removed, so a second ingest running next to the first is never disturbed. ``ArchiveWriter``
removes the stale leftovers of its own target when it starts (and reports those of other targets in the same
folder); ``rsir doctor`` lists them below any folder and removes them with ``--fix``.

A leftover whose writer ran on another machine sharing the folder (NFS) looks stale from here if that PID is
free here; do not run ``rsir doctor --fix`` on a shared folder while another machine writes into it.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_LEFTOVER = re.compile(r"^\.(?P<target>.+)\.(?P<kind>partial|old|tmp)-(?P<pid>\d+)(?:-\d+)?(?P<ext>\.[A-Za-z0-9]+)?$")
_SKIP_DIRS = {"patches.lmdb", "__pycache__", ".git", ".venv", "node_modules"}


@dataclass(frozen=True)
class Leftover:
    """One hidden entry left by a write that did not finish."""

    path: Path
    target: str
    kind: str
    pid: int
    size: int
    stale: bool

    def describe(self) -> str:
        state = "stale: its process is gone" if self.stale else f"in use by running process {self.pid}"
        return f"{self.path} ({human_size(self.size)}, {self.kind} copy of {self.target}; {state})"


def human_size(n: int) -> str:
    """Bytes as B / kB / MB / GB with one decimal."""
    x = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if x < 1000 or unit == "TB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1000
    return f"{x:.1f} TB"


def _tree_size(path: Path) -> int:
    if not path.is_dir() or path.is_symlink():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _process_start(pid: int) -> float | None:
    """Start time of a process in seconds since the epoch (Linux /proc), None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def writer_alive(pid: int, written_at: float) -> bool:
    """Whether the process that wrote an entry at ``written_at`` (mtime) may still run as ``pid``."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return True
    start = _process_start(pid)
    # a process that started after the entry was last written cannot have written it: its PID was reused
    return start is None or start <= written_at + 2.0


def _leftover(path: Path) -> Leftover | None:
    m = _LEFTOVER.match(path.name)
    if not m:
        return None
    try:
        mtime = path.lstat().st_mtime
    except OSError:
        return None
    pid = int(m.group("pid"))
    return Leftover(path, m.group("target"), m.group("kind"), pid, _tree_size(path), not writer_alive(pid, mtime))


def leftovers_in(folder: str | Path, target: str | None = None) -> list[Leftover]:
    """Leftovers directly in ``folder`` (only those of ``target`` when given), sorted by name."""
    folder = Path(folder)
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    out = []
    for n in names:
        if not n.startswith("."):
            continue
        lo = _leftover(folder / n)
        if lo is not None and (target is None or lo.target == target):
            out.append(lo)
    return out


def find_leftovers(root: str | Path, max_depth: int = 4) -> Iterator[Leftover]:
    """Leftovers in ``root`` and its folders down to ``max_depth`` levels (not inside leftovers or LMDB stores)."""
    root = Path(root)
    level = [root]
    for _ in range(max_depth + 1):
        nxt: list[Path] = []
        for d in level:
            yield from leftovers_in(d)
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                if e.is_dir(follow_symlinks=False) and e.name not in _SKIP_DIRS and not _LEFTOVER.match(e.name):
                    nxt.append(Path(e.path))
        level = nxt


def remove(lo: Leftover) -> None:
    """Delete one leftover (a folder or a file)."""
    if lo.path.is_dir() and not lo.path.is_symlink():
        shutil.rmtree(lo.path, ignore_errors=True)
    else:
        lo.path.unlink(missing_ok=True)


def remove_stale(folder: str | Path, target: str) -> list[Leftover]:
    """Remove the stale leftovers of ``target`` in ``folder``; return what was removed."""
    removed = []
    for lo in leftovers_in(folder, target):
        if lo.stale:
            remove(lo)
            removed.append(lo)
    return removed
