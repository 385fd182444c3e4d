"""A time budget and cancellation flag for decoding one file, checked between frames and batches."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workers.exceptions import DecodeCancelled, DecodeTimeout


class DecodeBudget:
    """Decode-time budget and stop flag shared by probing and decoding of one file.

    Only time spent inside the decoder counts (``running()`` brackets it): a consumer that takes its
    time over each batch (CLIP on a slow GPU) does not eat the decoder's budget. Decoding libraries
    are C code, so the budget is checked between packets, frames and batches; a single call that
    never returns can only be stopped by killing the process, which is the job runner's hard timeout.

    Args:
        path: The file being decoded.
        timeout_s: Seconds of decoding allowed in total; ``None`` means no limit.
        stop: When set by another thread, the next check raises :class:`DecodeCancelled`.
        name: What error messages call the file: the name its user knows (an upload is stored as
            ``video``); the file's own name when ``None``. Probing and every backend take it from here.
    """

    def __init__(self, path: str | Path, timeout_s: float | None = None, stop: threading.Event | None = None,
                 *, name: str | None = None) -> None:
        if timeout_s is not None and timeout_s < 0:
            raise ValueError(f"timeout_s must be >= 0 or None, got {timeout_s}")
        self.path = Path(path)
        self.name = name or self.path.name
        self.timeout_s = timeout_s
        self.stop = stop
        self._used_s = 0.0
        self._since: float | None = None
        self._depth = 0

    @property
    def elapsed_s(self) -> float:
        """Seconds spent decoding so far."""
        if self._since is None:
            return self._used_s
        return self._used_s + time.monotonic() - self._since

    @contextmanager
    def running(self) -> Iterator[None]:
        """Count the time spent in the ``with`` block against the budget (re-entrant)."""
        if self._depth == 0:
            self._since = time.monotonic()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._since is not None:
                self._used_s += time.monotonic() - self._since
                self._since = None

    def check(self) -> None:
        """Raise if the caller asked to stop or the budget is spent.

        Raises:
            DecodeCancelled: The stop event is set.
            DecodeTimeout: More than ``timeout_s`` seconds were spent decoding.
        """
        if self.stop is not None and self.stop.is_set():
            raise DecodeCancelled(self.path, name=self.name)
        if self.timeout_s is not None:
            elapsed = self.elapsed_s
            if elapsed >= self.timeout_s:
                raise DecodeTimeout(self.path, self.timeout_s, elapsed, name=self.name)
