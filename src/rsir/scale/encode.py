"""Encode an archive on a Dask cluster: partitions of consecutive archive positions, each read and encoded by a
worker, streamed back to the client in archive order.

Partitions are whole multiples of the local path's batch size and start at multiples of it, so every batch a
worker encodes is the batch the local path encodes: the codes are the same, bit for bit (tested). The encoder is
sent to every worker once (``scatter(broadcast=True)``); each worker opens the archive itself (shared storage,
the same path). When a worker dies, the scheduler runs its partitions again on the others (up to the cluster's
``allowed-failures``); the client waits for them and keeps archive order.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rsir.data.archive import Archive, open_archive
from rsir.encoding import Encoder
from rsir.runtime import prefetch
from rsir.scale.cluster import ClusterError, n_workers

#: worker-side cache of opened archives (a worker runs many partitions of one archive)
_ARCHIVES: dict[str, Archive] = {}


def encode_partition(archive_path: str, start: int, stop: int, encoder: Encoder, modality: str,
                     batch_size: int) -> tuple[list[str], np.ndarray]:
    """Runs on a worker: the ids and codes of archive positions ``start:stop``, in batches of ``batch_size``."""
    arch = _ARCHIVES.get(archive_path)
    if arch is None:
        arch = _ARCHIVES[archive_path] = open_archive(archive_path)
    ids: list[str] = []
    chunks = []
    # as the local path: reading the next batch overlaps with encoding this one
    for b_ids, x in prefetch(arch.batches(batch_size, modality=modality, positions=range(start, stop)), depth=2):
        ids += b_ids
        chunks.append(np.asarray(encoder.encode(x)))
    return ids, np.concatenate(chunks) if chunks else np.zeros((0, 0), np.uint8)


def partitions(n: int, batch_size: int, workers: int, partition_items: int | None = None) -> list[tuple[int, int]]:
    """(start, stop) ranges covering 0..n: about 4 per worker (so a lost worker costs little), each a multiple of
    ``batch_size`` items (the last may be shorter)."""
    if partition_items is None:
        partition_items = max(batch_size, math.ceil(n / (4 * workers)))
    size = max(1, math.ceil(partition_items / batch_size)) * batch_size
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def dask_encoder(client: Any, partition_items: int | None = None, log: Callable[[str], None] | None = None
                 ) -> Callable[..., Iterator[tuple[list[str], np.ndarray]]]:
    """An ``encode_batches`` hook for :func:`rsir.pipeline.build_index` that encodes on ``client``'s cluster."""

    def encode_batches(arch: Archive, encoder: Encoder, modality: str, batch_size: int, progress: bool
                       ) -> Iterator[tuple[list[str], np.ndarray]]:
        return encode_on_cluster(client, arch.path, len(arch), encoder, modality, batch_size, progress,
                                 partition_items, log)

    return encode_batches


def encode_on_cluster(client: Any, archive_path: str | Path, n: int, encoder: Encoder, modality: str,
                      batch_size: int = 64, progress: bool = True, partition_items: int | None = None,
                      log: Callable[[str], None] | None = None) -> Iterator[tuple[list[str], np.ndarray]]:
    """Yield (ids, codes) per partition in archive order while the cluster encodes them (any order)."""
    from distributed import as_completed

    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    workers = n_workers(client)
    parts = partitions(n, batch_size, workers, partition_items)
    path = str(Path(archive_path).resolve())
    [enc] = client.scatter([encoder], broadcast=True, hash=False)
    futures = [client.submit(encode_partition, path, s, e, enc, modality, batch_size, pure=False,
                             key=f"rsir-encode-{i}-{time.monotonic_ns()}") for i, (s, e) in enumerate(parts)]
    order = {f.key: i for i, f in enumerate(futures)}
    done: dict[int, tuple[list[str], np.ndarray]] = {}
    nxt = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"encoding on {workers} dask worker(s)", unit="item")
    t0 = time.perf_counter()
    try:
        for fut in as_completed(futures):
            i = order[fut.key]
            try:
                done[i] = fut.result()
            except Exception as e:  # KilledWorker after too many losses, or the encoder's own error
                raise ClusterError(f"partition {i} (items {parts[i][0]}-{parts[i][1] - 1}) failed on the cluster: "
                                   f"{type(e).__name__}: {e}") from None
            if bar is not None:
                bar.update(parts[i][1] - parts[i][0])
            fut.release()
            while nxt in done:  # stream the finished prefix in archive order
                yield done.pop(nxt)
                nxt += 1
    finally:
        if bar is not None:
            bar.close()
        for f in futures:
            f.cancel()
    if progress:
        say(f"encoded {n} items in {len(parts)} partitions on {workers} worker(s) in "
            f"{time.perf_counter() - t0:.1f} s")
