"""Sharded archives: the same catalog over several LMDB files, so that workers on other machines (Dask, rsir.scale)
read their part of an archive from shared storage and no single file grows without bound.

``shard_archive(src, out, n)`` copies an archive into ``out`` with its tensor store split into ``n`` LMDB files
``patches-000.lmdb`` ... by contiguous ranges of catalog positions (a Dask partition of consecutive items then
reads one or two files). The manifest lists them under ``shards`` (store, start, stop); :class:`Archive` picks the
file of a position, so everything that reads an archive reads a sharded one unchanged. Written with
:func:`rsir.storage.atomic_dir`.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import lmdb

from rsir.data.archive import CATALOG, MANIFEST, STORE, open_archive
from rsir.errors import ArchiveError
from rsir.storage import atomic_dir, atomic_write_json


def shard_archive(src: str | Path, out: str | Path, n_shards: int) -> Path:
    """Write a copy of archive ``src`` at ``out`` whose items are spread over ``n_shards`` LMDB files."""
    arch = open_archive(src)
    n = len(arch)
    if not 1 <= n_shards <= max(1, n):
        raise ArchiveError(f"--shards must be between 1 and the {n} items of {arch.path}, got {n_shards}")
    if arch.manifest.get("shards"):
        raise ArchiveError(f"{arch.path} is sharded already")
    size = math.ceil(n / n_shards)
    ranges = [(s, min(n, s + size)) for s in range(0, n, size)]
    shards: list[dict[str, Any]] = [{"store": f"patches-{i:03d}.lmdb", "start": s, "stop": e}
                                    for i, (s, e) in enumerate(ranges)]
    pos = {i: p for p, i in enumerate(arch.ids)}
    src_env = lmdb.open(str(arch.path / STORE), readonly=True, lock=False, subdir=True)
    try:
        with atomic_dir(out) as tmp:
            shutil.copy2(arch.path / CATALOG, tmp / CATALOG)
            envs = [lmdb.open(str(tmp / str(sh["store"])), map_size=1 << 40, subdir=True) for sh in shards]
            try:
                txns = [e.begin(write=True) for e in envs]
                with src_env.begin(buffers=False) as rt:
                    for key, value in rt.cursor():
                        item = key.decode("utf-8", "replace").split("/", 1)[-1]
                        p = pos.get(item, 0)
                        txns[min(p // size, len(shards) - 1)].put(key, value)
                for t in txns:
                    t.commit()
                for e in envs:
                    e.sync(True)
            finally:
                for e in envs:
                    e.close()
            manifest = json.loads((arch.path / MANIFEST).read_text())
            manifest.update(shards=shards, sharded_from=str(arch.path.resolve()))
            atomic_write_json(tmp / MANIFEST, manifest)
    finally:
        src_env.close()
    return Path(out)
