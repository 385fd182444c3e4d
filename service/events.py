"""The event history as the API serves it: the score curve around an event, and the verdict counters of /metrics.

Records, listing and verdicts are :class:`vad.events.EventIndex`'s; this module adds what needs the jobs' results
and the streams' timelines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from service.store import REDIS_ERRORS, JobStore
from service.streams import StreamStore, score_body
from vad.events import SCORES_PAD_S, EventIndex, EventRecord, EventScores

TIMELINE_SLACK_S = 60.0
"""How much earlier than its opening a stream event's first snippet may have been scored (the minimum event length
and scoring lag), when its part of the timeline is looked up by wall-clock time."""


def _in_window(start_s: float, end_s: float, record: EventRecord) -> bool:
    end = record.end_s if record.end_s is not None else float("inf")
    return end_s > record.start_s - SCORES_PAD_S and start_s < end + SCORES_PAD_S


def score_curve(record: EventRecord, jobs: JobStore, streams: StreamStore) -> EventScores:
    """The scores of the snippets within :data:`~vad.events.SCORES_PAD_S` of the event: a job's from its result,
    a stream's from its timeline (kept for ``VAD_STREAM_TIMELINE_RETENTION_S``: empty after that)."""
    points: list[tuple[float, float, float]] = []
    if record.source == "job":
        raw = jobs.result_json(record.source_id)
        timeline = json.loads(raw)["timeline"] if raw is not None else {"start_s": [], "end_s": [], "score": []}
        for a, b, s in zip(timeline["start_s"], timeline["end_s"], timeline["score"], strict=True):
            if _in_window(a, b, record):
                points.append((a, b, s))
    else:
        length = (record.end_s - record.start_s) if record.end_s is not None else 0.0
        since = record.opened_at - length - SCORES_PAD_S - TIMELINE_SLACK_S
        until = (record.closed_at or time.time()) + SCORES_PAD_S
        for entry in streams.timeline(record.source_id, since, until, 100_000):
            point = score_body(entry)
            a, b, s = point["start_s"], point["end_s"], point["score"]
            if a is not None and b is not None and s is not None and _in_window(a, b, record):
                points.append((a, b, s))
    return EventScores(event_id=record.id, start_s=[p[0] for p in points], end_s=[p[1] for p in points],
                       score=[p[2] for p in points])


class VerdictCollector(Collector):
    """``vad_verdicts{verdict}``: verdicts recorded (new or changed; a repeat counts once), by kind, and
    withdrawals (``withdrawn``), read from Redis at scrape time so that every API replica counts."""

    def __init__(self, index: EventIndex) -> None:
        self.index = index

    def collect(self) -> Iterator[Metric]:
        try:
            counts = self.index.verdict_counts()
        except REDIS_ERRORS:
            return
        family = CounterMetricFamily("vad_verdicts", "Verdicts given to events, by verdict (withdrawn: taken back).",
                                     labels=["verdict"])
        for kind, value in counts.items():
            family.add_metric([kind], value)
        yield family
