"""Events of a live stream, opened and closed as the scores arrive.

The rule is the offline one (:func:`workers.event_finder.find_events`: threshold runs, gaps shorter than the merge gap
joined, events shorter than the minimum dropped) decided as early as the past allows, plus hysteresis:

* a run starts at a snippet scoring above ``threshold``;
* it goes on while snippets score above ``threshold - hysteresis``; runs of lower scores shorter than
  ``merge_gap_s`` are bridged;
* the event **opens** as soon as the run lasts ``min_event_s`` (at once when that is 0) and **closes** as soon as
  the scores have stayed low for ``merge_gap_s`` (nothing later could still be merged into it). It ends where
  the last high snippet ends, so a closed event covers what the offline rule would have called the event.

With ``hysteresis = 0`` and every snippet present, the closed events are exactly the offline rule's events of
the same scores.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from workers.stream.online import SnippetScore

EventKind = Literal["open", "close"]


@dataclass(frozen=True)
class LiveEvent:
    """One event of a stream as known at some moment.

    Attributes:
        id: Unique id (a UUID), the same in its open and close updates.
        class_name: Abnormal class with the highest mean probability over the event so far (normal excluded).
        class_prob: That mean probability.
        start_s: Stream time of the event's start (start of its first snippet).
        end_s: Stream time of its end (end of its last high snippet); ``None`` while open.
        peak_score: Highest anomaly score so far.
        mean_score: Mean anomaly score over the event so far (bridged gaps included).
        first_index: Its first snippet.
        last_index: Its last high snippet so far.
        opened_at: Unix time at which it opened.
        closed_at: Unix time at which it closed (``None`` while open).
        start_at: ``start_s`` as a Unix time: when the media it starts with was live (``None`` when the stream
            clock's origin is unknown).
        end_at: ``end_s`` as a Unix time (``None`` while open).
    """

    id: str
    class_name: str
    class_prob: float
    start_s: float
    end_s: float | None
    peak_score: float
    mean_score: float
    first_index: int
    last_index: int
    opened_at: float | None = None
    closed_at: float | None = None
    start_at: float | None = None
    end_at: float | None = None

    @property
    def is_open(self) -> bool:
        return self.end_s is None

    def to_dict(self, decimals: int = 6) -> dict[str, Any]:
        """JSON-ready fields (``class`` for the class name, as in the offline result)."""
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, decimals)

        return {"id": self.id, "class": self.class_name, "class_prob": r(self.class_prob), "start_s": r(self.start_s),
                "end_s": r(self.end_s), "peak_score": r(self.peak_score), "mean_score": r(self.mean_score),
                "first_index": self.first_index, "last_index": self.last_index, "opened_at": self.opened_at,
                "closed_at": self.closed_at, "start_at": r(self.start_at), "end_at": r(self.end_at)}


@dataclass(frozen=True)
class EventUpdate:
    """An event opened or closed.

    Attributes:
        kind: ``open`` or ``close``.
        event: The event at that moment (``end_s`` set on close).
        reason: Why it closed: ``scores fell`` (the rule), or what ended the stream (``stopped``, ``source lost``…).
        features: On close, the event's snippet features and their context (``[T, D]`` float32) and the snippet
            index of their first row, when the runner kept them (:mod:`workers.stream.feature_ring`).
    """

    kind: EventKind
    event: LiveEvent
    reason: str | None = None
    features: tuple[np.ndarray, int] | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "reason": self.reason, "event": self.event.to_dict()}


@dataclass
class _Run:
    """The run being followed: its high snippets and the low ones after the last high one."""

    id: str
    first_index: int
    start_s: float
    last_index: int
    last_end_s: float
    peak: float
    score_sum: float
    probs_sum: np.ndarray
    count: int
    gap_score_sum: float = 0.0
    gap_probs_sum: np.ndarray | None = None
    gap_count: int = 0
    announced: bool = False
    opened_at: float | None = None
    start_at: float | None = None
    last_end_at: float | None = None

    def add_high(self, s: SnippetScore, probs: np.ndarray) -> None:
        if self.gap_count:  # the low snippets were a bridged gap: they belong to the event
            self.score_sum += self.gap_score_sum
            self.probs_sum = self.probs_sum + self.gap_probs_sum
            self.count += self.gap_count
            self.gap_score_sum, self.gap_probs_sum, self.gap_count = 0.0, None, 0
        self.last_index, self.last_end_s, self.last_end_at = s.index, s.end_s, s.end_at
        self.peak = max(self.peak, s.score)
        self.score_sum += s.score
        self.probs_sum = self.probs_sum + probs
        self.count += 1

    def add_low(self, s: SnippetScore, probs: np.ndarray) -> None:
        self.gap_score_sum += s.score
        self.gap_probs_sum = probs if self.gap_probs_sum is None else self.gap_probs_sum + probs
        self.gap_count += 1


@dataclass
class EventTracker:
    """Turns a stream's snippet scores into event openings and closings.

    Args:
        threshold: A run starts at a snippet scoring strictly above this.
        hysteresis: A run goes on while snippets score above ``threshold - hysteresis``.
        min_event_s: An event opens once its run lasts this long (0: at its first snippet); shorter runs are
            never reported.
        merge_gap_s: An event closes once the scores have stayed low this long; shorter dips are bridged.
        class_names: The model's classes, normal first.

    Raises:
        ValueError: A setting out of range, or fewer than two classes.
    """

    threshold: float
    hysteresis: float
    min_event_s: float
    merge_gap_s: float
    class_names: Sequence[str]
    _run: _Run | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0 or not 0.0 <= self.hysteresis <= self.threshold:
            raise ValueError(f"need 0 <= hysteresis <= threshold <= 1; got threshold {self.threshold}, "
                             f"hysteresis {self.hysteresis}")
        if self.min_event_s < 0 or self.merge_gap_s < 0:
            raise ValueError(f"min_event_s and merge_gap_s must be >= 0; got {self.min_event_s}, {self.merge_gap_s}")
        if len(self.class_names) < 2:
            raise ValueError(f"need a normal and at least one abnormal class, got {list(self.class_names)}")
        self.class_names = tuple(self.class_names)

    def retune(self, threshold: float, min_event_s: float, hysteresis: float | None = None) -> None:
        """Put a new threshold (and minimum event length) in force from the next snippet on, without losing the run
        being followed (a calibration or a verdict while the stream runs). ``hysteresis`` defaults to the current
        one, capped at the new threshold.

        Raises:
            ValueError: A setting out of range (nothing is changed).
        """
        level = min(self.hysteresis if hysteresis is None else hysteresis, threshold)
        if not 0.0 <= threshold <= 1.0 or level < 0 or min_event_s < 0:
            raise ValueError(f"need 0 <= threshold <= 1 and min_event_s >= 0; got {threshold}, {min_event_s}")
        self.threshold, self.hysteresis, self.min_event_s = threshold, level, min_event_s

    @property
    def low(self) -> float:
        """The score above which a run goes on."""
        return self.threshold - self.hysteresis

    @property
    def run_peak(self) -> tuple[str, float] | None:
        """The id and peak score of the run being followed (opened as an event or not yet), if any."""
        run = self._run
        return None if run is None else (run.id, run.peak)

    @property
    def unopened_start_s(self) -> float | None:
        """Stream time of the start of the run being followed that has not opened as an event yet (shorter than
        ``min_event_s`` so far), if any: the event it may become starts there."""
        run = self._run
        return None if run is None or run.announced else run.start_s

    @property
    def open_event(self) -> LiveEvent | None:
        """The event open now, if any."""
        run = self._run
        return self._event(run) if run is not None and run.announced else None

    def update(self, s: SnippetScore) -> list[EventUpdate]:
        """Take the next snippet's scores; return the events that open or close with it (time order)."""
        probs = np.asarray(s.class_probs, dtype=np.float64)
        if probs.shape != (len(self.class_names),):
            raise ValueError(f"snippet {s.index}: {probs.shape[0]} class probabilities for "
                             f"{len(self.class_names)} classes")
        run = self._run
        if run is None:
            if s.score <= self.threshold:
                return []
            run = self._run = _Run(id=str(uuid.uuid4()), first_index=s.index, start_s=s.start_s, last_index=s.index,
                                   last_end_s=s.end_s, peak=s.score, score_sum=s.score, probs_sum=probs, count=1,
                                   start_at=s.start_at, last_end_at=s.end_at)
        elif s.score > self.low:
            run.add_high(s, probs)
        else:
            run.add_low(s, probs)
            if s.end_s - run.last_end_s >= self.merge_gap_s:
                return self.finish("scores fell", now=s.scored_at)
            return []
        if not run.announced and run.last_end_s - run.start_s >= self.min_event_s:
            run.announced, run.opened_at = True, s.scored_at if s.scored_at is not None else time.time()
            return [EventUpdate("open", self._event(run))]
        return []

    def finish(self, reason: str = "stopped", now: float | None = None) -> list[EventUpdate]:
        """End the run being followed: close its event if it had opened (e.g. when the stream stops)."""
        run, self._run = self._run, None
        if run is None or not run.announced:
            return []
        closed_at = now if now is not None else time.time()
        return [EventUpdate("close", self._event(run, closed_at=closed_at, closed=True), reason)]

    def _event(self, run: _Run, closed_at: float | None = None, closed: bool = False) -> LiveEvent:
        mean_probs = run.probs_sum[1:] / run.count
        best = int(np.argmax(mean_probs))
        return LiveEvent(
            id=run.id, class_name=self.class_names[best + 1], class_prob=float(mean_probs[best]), start_s=run.start_s,
            end_s=run.last_end_s if closed else None, peak_score=run.peak, mean_score=run.score_sum / run.count,
            first_index=run.first_index, last_index=run.last_index, opened_at=run.opened_at, closed_at=closed_at,
            start_at=run.start_at, end_at=run.last_end_at if closed else None,
        )
