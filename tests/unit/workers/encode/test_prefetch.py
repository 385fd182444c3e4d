"""The producer thread: order, bounded look-ahead, error propagation, early close, and a stuck producer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from workers.encode.prefetch import Prefetcher

pytestmark = pytest.mark.timeout(30)


def test_items_arrive_in_order_and_the_thread_ends() -> None:
    with Prefetcher(lambda stop: iter(range(50)), depth=2) as items:
        assert list(items) == list(range(50))
        assert list(items) == []
    assert not items._thread.is_alive()


def test_the_producer_runs_at_most_depth_items_ahead() -> None:
    produced: list[int] = []

    def produce(stop: threading.Event) -> Iterator[int]:
        for i in range(20):
            produced.append(i)
            yield i

    with Prefetcher(produce, depth=2, poll_s=0.01) as items:
        for consumed, _ in enumerate(items, start=1):
            time.sleep(0.01)
            # queued (depth) + the one waiting to be put + the one just consumed
            assert len(produced) - consumed <= 3


def test_producer_errors_reach_the_consumer_after_the_good_items() -> None:
    def produce(stop: threading.Event) -> Iterator[int]:
        yield 1
        yield 2
        raise KeyError("decoder broke")

    got = []
    with Prefetcher(produce) as items, pytest.raises(KeyError, match="decoder broke"):
        for item in items:
            got.append(item)
    assert got == [1, 2]


def test_closing_early_stops_the_producer_and_runs_its_cleanup() -> None:
    cleaned = threading.Event()

    def produce(stop: threading.Event) -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            cleaned.set()

    with Prefetcher(produce, depth=1, poll_s=0.01) as items:
        assert next(items) == 0
    assert cleaned.wait(2.0) and not items._thread.is_alive()


def test_a_stuck_producer_is_abandoned_through_check() -> None:
    release = threading.Event()

    def produce(stop: threading.Event) -> Iterator[int]:
        release.wait(10.0)  # a C call that ignores the stop flag
        yield 1

    def check(waited_s: float) -> None:
        if waited_s > 0.2:
            raise TimeoutError(f"waited {waited_s:.2f} s")

    start = time.monotonic()
    with Prefetcher(produce, check=check, poll_s=0.02) as items, pytest.raises(TimeoutError):
        next(items)
    assert time.monotonic() - start < 8.0
    release.set()
