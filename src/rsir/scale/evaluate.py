"""Rank large query sets on a Dask cluster (``rsir eval --dask``): the database codes and labels go to every
worker once, each task ranks a group of consecutive query blocks against the whole database, and the client adds
the per-block sums in block order, so the metrics equal the local ones exactly (tested)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from rsir.scale.cluster import ClusterError, n_workers


def dask_blocks(client: Any, tasks_per_worker: int = 4) -> Callable[..., Iterator[dict[str, Any]]]:
    """A ``run_blocks`` hook for :func:`rsir.eval.protocols.evaluate_full` that runs on ``client``'s cluster."""

    def run_blocks(fn: Callable[..., dict[str, Any]], shared: dict[str, Any], blocks: list[dict[str, Any]]
                   ) -> Iterator[dict[str, Any]]:
        if not blocks:
            return
        shared_f = {k: client.scatter(v, broadcast=True, hash=False) if hasattr(v, "nbytes") else v
                    for k, v in shared.items()}
        per_task = max(1, math.ceil(len(blocks) / (tasks_per_worker * n_workers(client))))
        groups = [blocks[i:i + per_task] for i in range(0, len(blocks), per_task)]
        futures = [client.submit(_run_group, fn, shared_f, g, pure=False) for g in groups]
        try:
            for i, fut in enumerate(futures):
                try:
                    out = fut.result()
                except Exception as e:
                    raise ClusterError(f"evaluation task {i} failed on the cluster: {type(e).__name__}: {e}"
                                       ) from None
                fut.release()
                yield from out
        finally:
            for f in futures:
                f.cancel()

    return run_blocks


def _run_group(fn: Callable[..., dict[str, Any]], shared: dict[str, Any], group: list[dict[str, Any]]
               ) -> list[dict[str, Any]]:
    return [fn(**shared, **b) for b in group]
