"""Run a producer (the video decoder) in a thread, ahead of its consumer (the encoder), through a bounded queue.

Decoding and encoding then overlap: while the encoder embeds batch ``k``, the decoder fills batch
``k + 1``. The queue bounds memory (``depth`` items waiting, one being filled, one being consumed).
Errors raised by the producer reach the consumer unchanged, at the point where the failed item
would have been. The consumer never blocks for long: it polls, so a ``check`` callback can cancel
or time out a producer stuck inside a C call (the thread is a daemon and is left to finish alone).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")

_END = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Prefetcher(Generic[T], Iterator[T]):
    """Iterate over ``produce(stop)`` while it runs in a background thread.

    Args:
        produce: Called in the thread with the stop event; yields the items. It should check the event
            (the decoder gets it as its stop flag) and must release its resources when closed.
        depth: Items the producer may hold ready.
        check: Called with the seconds spent waiting so far each time the consumer waits
            ``poll_s`` without an item; raise from it to stop waiting (cancel, time out).
        poll_s: How often the waiting consumer calls ``check``.
        name: Thread name (shows in stack dumps).

    Attributes:
        waited_s: Seconds the consumer spent waiting for items (decoding not hidden by the overlap).
    """

    def __init__(self, produce: Callable[[threading.Event], Iterator[T]], *, depth: int = 2,
                 check: Callable[[float], None] | None = None, poll_s: float = 0.05, name: str = "prefetch") -> None:
        self.stop = threading.Event()
        self.waited_s = 0.0
        self._produce = produce
        self._check = check
        self._poll_s = poll_s
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._done = False

    def __enter__(self) -> Prefetcher[T]:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __iter__(self) -> Prefetcher[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        since = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=self._poll_s)
                break
            except queue.Empty:
                if self._check is not None:
                    self._check(self.waited_s + time.monotonic() - since)
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the producer thread ended without a result") from None
        self.waited_s += time.monotonic() - since
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._done = True
            raise item.exc
        return item  # type: ignore[return-value]

    def close(self, join_s: float = 1.0) -> None:
        """Ask the producer to stop, free the queue and wait up to ``join_s`` for the thread."""
        self.stop.set()
        self._done = True
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=join_s)

    def _run(self) -> None:
        items = self._produce(self.stop)
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(_Failure(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def _put(self, item: object) -> bool:
        while not self.stop.is_set():
            try:
                self._queue.put(item, timeout=self._poll_s)
                return True
            except queue.Full:
                continue
        return False
