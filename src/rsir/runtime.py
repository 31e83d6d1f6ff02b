"""Process-level performance settings and a background prefetcher, shared by indexing, training and serving.

glibc malloc returns every block over its mmap threshold (32 MB at most, adjusted dynamically) to the kernel
when it is freed, so each new N x C x 120 x 120 batch and every large activation of the network starts on
fresh pages: tens of milliseconds of page faults per batch, more than a third of the encoding time on two
cores (measured in bench/train_bench.py). :func:`tune_allocator` raises the thresholds so such blocks are
recycled from the heap instead (the same effect the PyTorch performance guide gets from jemalloc/tcmalloc).
It is called by the ``rsir`` command and by the indexing and training entry points; it is a no-op where the
C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar, cast

T = TypeVar("T")

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_tuned: bool | None = None


def tune_allocator(mmap_threshold: int = 256 << 20, trim_threshold: int = 1 << 30,
                   top_pad: int = 64 << 20) -> bool:
    """Keep large freed blocks in the heap (glibc ``mallopt``); True when the settings took effect.

    ``RSIR_TUNE_MALLOC=0`` in the environment leaves malloc alone (e.g. under a preloaded jemalloc).
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if os.environ.get("RSIR_TUNE_MALLOC", "1").strip() == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
    ok = bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold)) and ok
    ok = bool(mallopt(_M_TOP_PAD, top_pad)) and ok
    _tuned = ok
    return ok


_END = object()


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` while a background thread produces the next ``depth`` of them.

    Reading a batch (LMDB, decoding, resampling in numpy/torch kernels that release the GIL) then overlaps with
    the consumer's work on the previous one. An exception in the producer is raised in the consumer; closing
    the generator early stops the producer.
    """
    q: queue.Queue[object] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(v: object) -> bool:
        while not stop.is_set():
            try:
                q.put(v, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for v in items:
                if not put((None, v)):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put((e, None))
            return
        put(_END)

    t = threading.Thread(target=produce, name="rsir-prefetch", daemon=True)
    t.start()
    try:
        while True:
            got = q.get()
            if got is _END:
                return
            err, v = cast("tuple[BaseException | None, T]", got)
            if err is not None:
                raise err
            yield v
    finally:
        stop.set()
        t.join(timeout=5)


R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``fn`` over ``items`` on ``workers`` threads, results in the order of ``items``; at most ``2 * workers``
    items are in flight (read but not yet consumed). With one worker it runs in the caller's thread. An
    exception in ``fn`` is raised here; closing the generator early cancels what has not started."""
    if workers <= 1:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rsir-worker") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
