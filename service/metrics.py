"""Prometheus metrics: request counts/latency from the API itself, queue and job figures from Redis."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from service.store import REDIS_ERRORS, JobStore, as_text


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

    def __init__(self, store: JobStore) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("vad_http_requests", "HTTP requests.", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("vad_http_request_seconds", "HTTP request latency.", ["method", "route"],
                                 registry=self.registry)
        self.registry.register(RedisCollector(store))

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
