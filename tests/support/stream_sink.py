"""A :class:`~workers.stream.runner.StreamSink` that records everything, with the monotonic time it came, and lets
another thread wait for a condition on what came (tests, benchmarks)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from workers.stream.event_tracker import EventUpdate
from workers.stream.online import SnippetScore
from workers.stream.runner import StreamStatus

T = TypeVar("T")


@dataclass(frozen=True)
class Received(Generic[T]):
    """One thing the sink got, and when (``time.monotonic()``)."""

    at: float
    item: T


@dataclass
class RecordingSink:
    """Records statuses, scores and events.

    Args:
        keep_scores: Scores kept (the latest ones); memory stays bounded on long runs.
        on_score: Called with every score after it is recorded (e.g. to slow the runner down in a test).
    """

    keep_scores: int = 100_000
    on_score: Callable[[SnippetScore], None] | None = None
    statuses: list[Received[StreamStatus]] = field(default_factory=list)
    scores: list[Received[SnippetScore]] = field(default_factory=list)
    events: list[Received[EventUpdate]] = field(default_factory=list)
    scored: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def status(self, status: StreamStatus) -> None:
        with self._cond:
            self.statuses.append(Received(time.monotonic(), status))
            self._cond.notify_all()

    def score(self, score: SnippetScore) -> None:
        with self._cond:
            self.scores.append(Received(time.monotonic(), score))
            self.scored += 1
            if len(self.scores) > self.keep_scores:
                del self.scores[: len(self.scores) - self.keep_scores]
            self._cond.notify_all()
        if self.on_score is not None:
            self.on_score(score)

    def event(self, update: EventUpdate) -> None:
        with self._cond:
            self.events.append(Received(time.monotonic(), update))
            self._cond.notify_all()

    def states(self) -> list[str]:
        """The states reported, consecutive repeats collapsed."""
        with self._cond:
            out: list[str] = []
            for r in self.statuses:
                if not out or out[-1] != r.item.state:
                    out.append(r.item.state)
            return out

    def wait_for(self, check: Callable[[RecordingSink], bool], timeout_s: float) -> bool:
        """Wait until ``check(self)`` holds (checked on every new item); whether it did within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not check(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
            return True
