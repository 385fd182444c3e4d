"""Prometheus metrics: request counts/latency from the API itself, queue and job figures from Redis."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from service.events import EventIndex
from service.store import REDIS_ERRORS, JobStore, as_text
from service.streams import StreamStore
from vad.streams import StreamState


class StreamCollector(Collector):
    """Read at scrape time from the records of running and queued streams: one series per stream, labelled by its
    id and name (never its URL), and stream counts by status. Counters follow the stream across workers."""

    def __init__(self, streams: StreamStore) -> None:
        self.streams = streams

    def collect(self) -> Iterator[Metric]:
        try:
            ids = [as_text(i) for i in self.streams.redis.zrange(self.streams.keys.streams_active, 0, -1)]  # type: ignore[arg-type]
            records = [self.streams.shown(r) for r in self.streams.records(ids)]
            workers = self.streams.workers()
        except REDIS_ERRORS:
            return
        labels = ["stream", "name"]
        by_status = GaugeMetricFamily("vad_streams", "Streams not stopped, by status.", labels=["status"])
        for state in StreamState:
            if not state.terminal:
                by_status.add_metric([state.value], sum(1 for r in records if r.status == state))
        yield by_status
        yield GaugeMetricFamily("vad_stream_capacity", "Places for streams on live stream-capable workers.",
                                value=sum(int(w.get("capacity", 0)) for w in workers.values()))
        precision = GaugeMetricFamily("vad_stream_clip_precision", "1 for each CLIP precision a stream-capable "
                                      "worker process scores streams at, and how it was chosen (probe, cache: "
                                      "the precision probe; setting: VAD_CLIP_PRECISION).",
                                      labels=["worker", "precision", "source"])
        for worker, info in sorted(workers.items()):
            for name, source in sorted(dict(info.get("clip_precision") or {}).items()):
                precision.add_metric([worker, name, source], 1.0)
        yield precision
        lag = GaugeMetricFamily("vad_stream_lag_seconds", "Seconds from a frame's arrival to its score.", labels=labels)
        up = GaugeMetricFamily("vad_stream_live", "1 while the stream is live.", labels=labels)
        scored = CounterMetricFamily("vad_stream_snippets_scored", "Snippets scored.", labels=labels)
        dropped = CounterMetricFamily("vad_stream_snippets_dropped", "Snippets dropped because scoring fell behind.",
                                      labels=labels)
        reconnects = CounterMetricFamily("vad_stream_reconnects", "Reconnections to the source.", labels=labels)
        events = CounterMetricFamily("vad_stream_events", "Events opened and closed.", labels=[*labels, "kind"])
        for r in records:
            ids_ = [r.id, r.name]
            lag.add_metric(ids_, r.lag_s if r.lag_s is not None else float("nan"))
            up.add_metric(ids_, 1.0 if r.status == StreamState.live else 0.0)
            scored.add_metric(ids_, r.snippets_scored)
            dropped.add_metric(ids_, r.snippets_dropped)
            reconnects.add_metric(ids_, r.reconnects)
            events.add_metric([*ids_, "open"], r.events_opened)
            events.add_metric([*ids_, "close"], r.events_closed)
        yield from (lag, up, scored, dropped, reconnects, events)


class RedisCollector(Collector):
    """Read at scrape time: queue depth, jobs by outcome and seconds per pipeline stage (written by workers)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        try:
            depth = self.store.queue_depth()
            raw = self.store.redis.hgetall(self.store.keys.stats)
        except REDIS_ERRORS:
            return
        stats = {as_text(k): float(v) for k, v in raw.items()}
        yield GaugeMetricFamily("vad_queue_depth", "Jobs waiting in the queue.", value=depth)
        jobs = CounterMetricFamily("vad_jobs", "Jobs ended, by outcome.", labels=["outcome"])
        for outcome in ("finished", "failed"):
            jobs.add_metric([outcome], stats.get(f"jobs_{outcome}", 0.0))
        yield jobs
        seconds = CounterMetricFamily("vad_stage_seconds", "Seconds spent per pipeline stage.", labels=["stage"])
        count = CounterMetricFamily("vad_stage_runs", "Jobs that went through a stage.", labels=["stage"])
        for key, value in stats.items():
            if key.startswith("stage_seconds:"):
                stage = key.split(":", 1)[1]
                seconds.add_metric([stage], value)
                count.add_metric([stage], stats.get(f"stage_runs:{stage}", 0.0))
        yield seconds
        yield count


class Metrics:
    """One registry per app (tests create many apps)."""

    def __init__(self, store: JobStore, streams: StreamStore | None = None, events: EventIndex | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("vad_http_requests", "HTTP requests.", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("vad_http_request_seconds", "HTTP request latency.", ["method", "route"],
                                 registry=self.registry)
        self.registry.register(RedisCollector(store))
        if streams is not None:
            self.registry.register(StreamCollector(streams))
        if events is not None:
            self.registry.register(VerdictCollector(events))

    async def middleware(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.requests.labels(request.method, path, str(status)).inc()
            self.latency.labels(request.method, path).observe(time.perf_counter() - start)


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
