"""The ground floor of everything rsir writes: atomic files and directories, manifests, checksums.

Every artefact rsir keeps (archives, indexes, INDEX directories, hashers, models, reports, the dataset cache)
is written with the functions here, so one set of rules holds for all of them:

- A file is written to a temporary sibling, flushed and fsynced, then renamed over its final name
  (:func:`atomic_file`, :func:`atomic_write_bytes`, :func:`atomic_write_json`).
- A directory is built in a hidden sibling ``.NAME.partial-PID-NS`` and renamed into place when complete
  (:func:`atomic_dir`); an existing directory is moved aside first and removed only after the rename, so a crash
  at any point leaves either the old or the new directory under the name, never a half-written one.
- A manifest (``manifest.json``) names its format and version and records the size and sha256 of each data
  file (:func:`file_entries`); :func:`read_manifest` checks all of it and raises a :class:`StorageError`
  (or a subclass the caller names) that says what is wrong with which file.

This module imports nothing from rsir but the error base class, so every other layer may depend on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rsir.errors import RsirError

MANIFEST = "manifest.json"


class StorageError(RsirError):
    """A stored artefact is missing, damaged (size or checksum mismatch), foreign or too new to read."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, streamed in 4 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def partial_sibling(path: Path, tag: str = "partial") -> Path:
    """A hidden, unique sibling name ``.NAME.<tag>-PID-NS`` on the same file system as ``path``."""
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{time.monotonic_ns()}")


def _fsync_file(f: Any) -> None:
    f.flush()
    os.fsync(f.fileno())


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error it is renamed over ``path``.

    The caller writes the file (any library that takes a path); it is fsynced before the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{time.monotonic_ns()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes to ``path`` atomically (temporary sibling, fsync, rename)."""
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        _fsync_file(f)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON (indented) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2))


def atomic_savefig(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically (parents created); the caller closes the figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return path


def replace_dir(tmp: Path, path: Path) -> None:
    """Rename the finished directory ``tmp`` to ``path``, moving an existing ``path`` aside first."""
    old = None
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise StorageError(f"{path} exists and is not a directory")
        old = partial_sibling(path, "old")
        os.rename(path, old)
    os.rename(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty hidden sibling directory; when the block ends without error it replaces ``path``.

    On an exception (or KeyboardInterrupt) the temporary directory is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_dir():
        raise StorageError(f"{path} exists and is not a directory")
    tmp = partial_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_entries(root: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{name: {"sha256", "bytes"}}`` of files under ``root`` (after fsyncing each), for a manifest."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        fp = root / name
        with open(fp, "rb+") as f:
            os.fsync(f.fileno())
        out[name] = {"sha256": sha256_file(fp), "bytes": fp.stat().st_size}
    return out


def write_manifest(root: Path, manifest: dict[str, Any], files: Iterable[str] = ()) -> dict[str, Any]:
    """Write ``root/manifest.json`` (atomically), adding the checksums of ``files`` under "files"."""
    manifest = dict(manifest)
    names = list(files)
    if names:
        manifest["files"] = file_entries(root, names)
    atomic_write_json(root / MANIFEST, manifest)
    return manifest


def write_dir_atomic(path: str | Path, files: dict[str, bytes], manifest: dict[str, Any]) -> Path:
    """Write data files + a checksummed manifest as one directory, atomically."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                f.write(data)
                _fsync_file(f)
        write_manifest(tmp, manifest, files)
    return path


def read_manifest(path: str | Path, format_name: str, version: int, error: type[RsirError] = StorageError,
                  what: str | None = None, verify: bool = True) -> dict[str, Any]:
    """Read and check ``path/manifest.json``: format name, version and (``verify``) each data file's size and
    sha256. Problems raise ``error`` with a message naming the directory or file."""
    path = Path(path)
    what = what or format_name
    mf = path / MANIFEST
    if not path.exists():
        raise error(f"{path}: no such {what}")
    if not mf.is_file():
        raise error(f"{path}: not an {format_name} directory (no {MANIFEST})")
    try:
        manifest = json.loads(mf.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{mf}: damaged manifest ({e})") from None
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found != format_name:
        raise error(f"{path}: not an {format_name} directory (format {found!r})")
    try:
        found_version = int(manifest.get("version", -1))
    except (TypeError, ValueError):
        raise error(f"{mf}: damaged manifest (version {manifest.get('version')!r})") from None
    if found_version > version:
        raise error(f"{path}: {format_name} version {found_version} is newer than this rsir reads ({version}); "
                    "upgrade rsir")
    if verify:
        verify_files(path, manifest.get("files", {}), error)
    return manifest


def verify_files(path: Path, entries: dict[str, dict[str, Any]], error: type[RsirError] = StorageError) -> None:
    """Check that each file of a manifest's "files" exists with its recorded size and sha256."""
    for name, entry in entries.items():
        fp = path / name
        if not fp.is_file():
            raise error(f"{path}: data file {name} is missing")
        size = fp.stat().st_size
        if size != entry.get("bytes"):
            raise error(f"{fp}: damaged or truncated ({size} bytes, manifest says {entry.get('bytes')})")
        if sha256_file(fp) != entry.get("sha256"):
            raise error(f"{fp}: damaged (sha256 checksum does not match the manifest)")


def utc_stamp() -> str:
    """The current time as an ISO 8601 UTC stamp, as manifests record it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
