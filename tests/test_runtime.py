import threading
import time

import pytest

from rsir.runtime import prefetch, tune_allocator


def test_prefetch_keeps_order_and_reads_ahead():
    produced: list[int] = []

    def items():
        for i in range(6):
            produced.append(i)
            yield i

    it = prefetch(items(), depth=2)
    assert next(it) == 0
    deadline = time.monotonic() + 5
    while len(produced) < 3 and time.monotonic() < deadline:  # the producer runs ahead of the consumer
        time.sleep(0.01)
    assert len(produced) >= 3
    assert list(it) == [1, 2, 3, 4, 5]


def test_prefetch_raises_the_producers_error_in_the_consumer():
    def items():
        yield 1
        raise ValueError("item 2 is corrupt")

    got = []
    with pytest.raises(ValueError, match="item 2 is corrupt"):
        for v in prefetch(items()):
            got.append(v)
    assert got == [1]


def test_closing_prefetch_early_stops_the_producer():
    def items():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    it = prefetch(items(), depth=1)
    assert next(it) == 0
    it.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


def test_tune_allocator_is_idempotent():
    first = tune_allocator()
    assert isinstance(first, bool) and tune_allocator() is first
