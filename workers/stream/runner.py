"""One live stream end to end: source → CLIP → online DSANet → events → a sink.

>>> engine = StreamEngine("ucf.safetensors")                        # doctest: +SKIP
>>> runner = StreamRunner("rtsp://cam/stream1", engine, sink)
>>> final = runner.run(stop)                                        # returns when stopped or failed

The runner knows nothing of HTTP or Redis: what it finds goes to a :class:`StreamSink` (the service's writes to
Redis, ``vad watch``'s terminal, a test's lists). One :class:`~workers.stream.online.StreamEngine` serves any
number of runners, each in its own thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from vad.bundles import ShadowStats
from vad.net.redact import redact_url
from workers.encode.scene_change import ChangeGate
from workers.settings import WorkerSettings
from workers.stream.batch_scheduler import SnippetRequest
from workers.stream.event_tracker import EventTracker, EventUpdate, LiveEvent
from workers.stream.feature_ring import FeatureRing
from workers.stream.live_source import LiveSource, SourceChange, SourceFrame, StreamClock
from workers.stream.online import OnlineScorer, SnippetScore, StreamEngine

NORMAL_WINDOW_SNIPPETS = 64
"""Snippets of a saved normal window (for ``vad adapt``)."""

logger = logging.getLogger(__name__)

StreamState = Literal["connecting", "live", "reconnecting", "stopped", "failed"]


@dataclass(frozen=True)
class StreamStatus:
    """Where a stream stands.

    Attributes:
        state: ``connecting`` (no frame yet), ``live``, ``reconnecting`` (lost after frames came; retrying with
            backoff), ``stopped`` (asked to stop, or a file ended) or ``failed`` (never connected in time, or an
            error; ``reason`` says what).
        reason: Why it is in that state (``None`` when live).
        since: Unix time it entered the state.
        url: The source's URL without credentials.
        fps: The source's frame rate (``None`` before it connected).
        width: Its frame width.
        height: Its frame height.
        snippets_scored: Snippets scored so far.
        snippets_dropped: Snippets dropped because scoring was behind.
        lag_s: Seconds from the latest scored snippet's frame arriving to its score.
        last_score: The latest snippet's anomaly score.
        open_event: The event open now.
        started_at: Unix time the stream was started.
        reconnects: Connections after the first.
        clock: Where the stream clock and snippet numbers stand (``None`` before the first frame of a new
            stream): what a reader taking the stream over continues from.
        clip_precision: The precision its CLIP features are computed at (``fp32``, ``int8``…).
    """

    state: StreamState
    reason: str | None
    since: float
    url: str
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    snippets_scored: int = 0
    snippets_dropped: int = 0
    lag_s: float | None = None
    last_score: float | None = None
    open_event: LiveEvent | None = None
    started_at: float | None = None
    reconnects: int = 0
    clock: StreamClock | None = None
    clip_precision: str | None = None

    @property
    def drop_rate(self) -> float:
        """Dropped snippets over all read ones."""
        total = self.snippets_scored + self.snippets_dropped
        return self.snippets_dropped / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        fields["open_event"] = self.open_event.to_dict() if self.open_event is not None else None
        fields["clock"] = None if self.clock is None else asdict(self.clock)
        return fields


class StreamSink(Protocol):
    """Receives what a :class:`StreamRunner` finds, on the runner's thread (keep the methods quick).

    ``status`` comes on every change of state and every ``stream_status_interval_s``; ``score`` for each scored
    snippet; ``event`` when an event opens or closes. An exception raised by a sink method stops the runner
    (``failed``, the exception's message as the reason).
    """

    def status(self, status: StreamStatus) -> None: ...

    def score(self, score: SnippetScore) -> None: ...

    def event(self, update: EventUpdate) -> None: ...


class AdaptationSink(Protocol):
    """What a sink may also take for adaptation (optional methods, looked up on the sink): a shadow head's events
    (recorded, never published) and normal windows of the stream's features."""

    def shadow_event(self, update: EventUpdate) -> None: ...

    def normal_window(self, features: Any) -> None: ...


class StreamRunner:
    """Runs one stream: reads the source, scores each snippet as it comes, tracks events, reports to the sink.

    Args:
        url: The source (URL or file).
        engine: The loaded models (shared).
        sink: Where statuses, scores and events go.
        settings: ``stream_*`` settings and ``threshold`` (default: the engine's settings).
        realtime: Pace a file like a live source.
        threshold: Overrides ``settings.threshold``.
        source: A ready source (tests); built from ``url`` and the settings when omitted.
        evidence: Keeps snapshots and clips of the events (:class:`~workers.evidence.stream.StreamEvidence`);
            ``None``: none.
        transport: RTSP's transport (``tcp``, ``udp``, ``auto``); ``settings.stream_rtsp_transport`` when omitted.
        resume: The clock and snippet numbers to continue (a stream taken over from another worker).
    """

    def __init__(self, url: str | Path, engine: StreamEngine, sink: StreamSink, settings: WorkerSettings | None = None,
                 *, realtime: bool = False, threshold: float | None = None, source: LiveSource | None = None,
                 transport: str | None = None, resume: StreamClock | None = None, evidence: Any = None) -> None:
        self.settings = s = settings if settings is not None else engine.settings
        self.engine = engine
        self.sink = sink
        self.source = source or LiveSource.from_settings(url, s, realtime=realtime, transport=transport,
                                                         resume=resume)
        hold = min(s.stream_hold, engine.visual_length - 1)
        self.scorer = OnlineScorer(engine, min(s.stream_window, engine.visual_length - hold), hold)
        level = s.threshold if threshold is None else threshold
        self.tracker = EventTracker(threshold=level, hysteresis=min(s.stream_hysteresis, level),
                                    min_event_s=s.stream_min_event_s, merge_gap_s=s.stream_merge_gap_s,
                                    class_names=engine.class_names)
        self._status = StreamStatus(state="connecting", reason=None, since=time.time(), url=redact_url(str(url)),
                                    clip_precision=getattr(engine, "clip_precision", None))
        self.features = FeatureRing()  # for the features of each closing event (verdicts)
        self.shadow_tracker: EventTracker | None = None
        self.shadow_stats: ShadowStats | None = None
        self._heads = threading.Lock()
        self._quiet_since: int | None = None  # the first snippet of the current stretch without an open event
        self._normal_saved_at = time.monotonic()
        self.gate = ChangeGate(s.stream_skip_unchanged)  # unchanged scenes reuse the last feature
        self._last_feature: np.ndarray | None = None
        self._connection = 0
        self._last_report = 0.0
        self.evidence = evidence

    def retune(self, threshold: float, min_event_s: float) -> None:
        """Put a new event threshold and minimum event length in force from the next snippet on (a calibration or a
        verdict, from another thread); the hysteresis stays the settings', capped at the threshold."""
        self.tracker.retune(threshold, min_event_s, min(self.settings.stream_hysteresis, threshold))
        with self._heads:  # a shadow is judged at the threshold in force
            if self.shadow_tracker is not None:
                self.shadow_tracker.retune(threshold, min_event_s, min(self.settings.stream_hysteresis, threshold))

    @property
    def current(self) -> StreamStatus:
        """The latest status."""
        return replace(self._status, snippets_dropped=self.source.dropped, open_event=self.tracker.open_event,
                       clock=self.source.clock)

    def set_heads(self, active: Any, shadow: Any) -> None:
        """Score with ``active`` (a :meth:`StreamEngine.head`; ``None``: the engine's model) and, beside it on the
        same windows, ``shadow`` (``None``: none). A new shadow starts its own events and tally; safe to call from
        another thread (it applies between two snippets)."""
        with self._heads:
            if shadow is not self.scorer.shadow:
                t = self.tracker
                self.shadow_tracker = None if shadow is None else EventTracker(
                    threshold=t.threshold, hysteresis=t.hysteresis, min_event_s=t.min_event_s,
                    merge_gap_s=t.merge_gap_s, class_names=t.class_names)
                self.shadow_stats = None if shadow is None else ShadowStats(since=time.time())
            self.scorer.head, self.scorer.shadow = active, shadow

    def run(self, stop: threading.Event) -> StreamStatus:
        """Run until ``stop`` is set, the source fails, or a file ends; return the final status (stopped/failed).

        Never raises for the stream's own failures (they end in a ``failed`` status with a reason).
        """
        started = time.time()
        self._status = replace(self._status, since=started, started_at=started)
        self._report(force=True)
        if self.evidence is not None:
            self.evidence.attach(self.source)
        scheduler = self.engine.scheduler if self.engine.batching else None
        if scheduler is not None:
            scheduler.attach()
        try:
            with self.source:
                pending: list[SourceChange] = []
                while not stop.is_set():
                    frame = self.source.get(timeout=0.2)
                    pending += self.source.changes()
                    # a change comes after the frames read before it: apply it in that order
                    before = frame.arrived_mono if frame is not None else float("inf")
                    self._follow([c for c in pending if c.mono <= before])
                    pending = [c for c in pending if c.mono > before]
                    if frame is not None:
                        self._score(frame)
                    elif self.source.finished and not pending:
                        self._follow(self.source.changes())
                        break
                    self._report()
                if stop.is_set():
                    self._end("stopped", "stopped")
        except Exception as exc:  # a sink or model error: the stream fails, with the reason
            logger.exception("stream %s failed", self._status.url)
            self._end("failed", f"{type(exc).__name__}: {exc}")
        finally:
            if scheduler is not None:
                scheduler.detach()
            if self.evidence is not None:
                self.evidence.close()  # the events closed above get their clips from what was buffered
        return self.current

    def _follow(self, changes: list[SourceChange]) -> None:
        for change in changes:
            if change.state in ("reconnecting", "stopped", "failed"):
                self._finish("source lost" if change.state == "reconnecting" else change.reason or change.state,
                             now=change.at)
            source = self.source
            self._status = replace(self._status, state=change.state, reason=change.reason, since=change.at,
                                   fps=source.fps, width=source.width, height=source.height,
                                   reconnects=max(0, change.connection - 1))
            self._report(force=True)

    def _score(self, frame: SourceFrame) -> None:
        if frame.connection != self._connection:  # a new connection: its past is not this one's
            self._connection = frame.connection
            self.scorer.reset()
            self.features.reset()
            self.gate.reset()
            self._last_feature = None
        feature, score = self._encode_and_score(frame)
        self.features.push(frame.index, feature)
        with self._heads:
            self._shadow(score)
        lag = time.monotonic() - frame.arrived_mono
        self._status = replace(self._status, snippets_scored=self._status.snippets_scored + 1, lag_s=lag,
                               last_score=score.score)
        self.sink.score(score)
        updates = self.tracker.update(score)
        stats = self.shadow_stats
        if stats is not None and score.shadow is not None:
            stats.live_events += sum(1 for u in updates if u.kind == "open")
        peak = self.tracker.run_peak
        if self.evidence is not None:  # references: encoded later, on the evidence thread
            self.evidence.frame(frame.image, (frame.start_s + frame.end_s) / 2)
            if peak is not None and peak[1] == score.score:
                self.evidence.peak(peak[0], frame.image, frame.start_s, frame.end_s)
        self._emit_events(updates)
        if self.evidence is not None:  # after the pins: an event not opened yet starts no earlier than this
            pending = self.tracker.unopened_start_s
            self.evidence.scored(frame.end_s if pending is None else pending)
        self._normal_window(frame.index)

    def _shadow(self, score: SnippetScore) -> None:
        """The shadow head's events over the same snippet: recorded apart, tallied beside the active model's."""
        if self.shadow_tracker is None or self.shadow_stats is None or score.shadow is None:
            return
        value, probs = score.shadow
        stats = self.shadow_stats
        stats.snippets += 1
        record = getattr(self.sink, "shadow_event", None)
        for update in self.shadow_tracker.update(replace(score, score=value, class_probs=probs, shadow=None)):
            stats.shadow_events += int(update.kind == "open")
            if record is not None:
                record(update)

    def _normal_window(self, index: int) -> None:
        """Save the last snippets as a normal window when no event was open over them (bounded, for adaptation)."""
        every = self.settings.stream_normal_window_every_s
        save = getattr(self.sink, "normal_window", None)
        if self.tracker.open_event is not None or self.tracker.run_peak is not None:
            self._quiet_since = None
            return
        self._quiet_since = index if self._quiet_since is None else self._quiet_since
        if save is None or every <= 0 or time.monotonic() - self._normal_saved_at < every \
                or index - self._quiet_since + 1 < NORMAL_WINDOW_SNIPPETS:
            return
        window = self.features.last(NORMAL_WINDOW_SNIPPETS)
        if window is not None:
            self._normal_saved_at = time.monotonic()
            save(window)

    def _encode_and_score(self, frame: SourceFrame) -> tuple[np.ndarray, SnippetScore]:
        """The snippet's feature (encoded, or the last one when its scene has not changed) and its score."""
        reuse = None if self.gate.changed(frame.image) else self._last_feature
        try:
            if self.engine.batching:
                request = SnippetRequest(self.scorer, frame.image if reuse is None else None, reuse, frame.index,
                                         frame.start_s, frame.end_s, arrived_at=frame.arrived_at,
                                         start_at=frame.start_at)
                feature, score = self.engine.scheduler.score(request)
            else:
                feature = self.engine.encode(frame.image[None])[0] if reuse is None else reuse
                score = self.scorer.push(feature, frame.index, frame.start_s, frame.end_s,
                                         arrived_at=frame.arrived_at, start_at=frame.start_at)
        except BaseException:
            self.gate.reset()  # the reference frame was not encoded
            raise
        self._last_feature = feature
        return feature, score

    def _emit_events(self, updates: list[EventUpdate]) -> None:
        for update in updates:
            if update.kind == "close":
                update = replace(update, features=self.features.around(update.event))
            self.sink.event(update)
            if self.evidence is not None:
                (self.evidence.opened if update.kind == "open" else self.evidence.closed)(update.event)

    def _finish(self, reason: str, now: float | None = None) -> None:
        """Close the open event, and the shadow's (recorded apart)."""
        self._emit_events(self.tracker.finish(reason, now=now))
        record = getattr(self.sink, "shadow_event", None)
        with self._heads:
            shadow = self.shadow_tracker.finish(reason, now=now) if self.shadow_tracker is not None else []
        if record is not None:
            for update in shadow:
                record(update)

    def _end(self, state: StreamState, reason: str) -> None:
        self._finish(reason)
        self._status = replace(self._status, state=state, reason=reason, since=time.time())
        self._report(force=True)

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_report >= self.settings.stream_status_interval_s:
            self._last_report = now
            self.sink.status(self.current)
