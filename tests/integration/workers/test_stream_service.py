"""The stream service of a worker process against the machine's Redis, with stand-in runners (no video): it runs up
to its capacity and the rest wait as queued and show so; a refused write, a stop or a DELETE stops a runner at once
(a deleted stream's keys never come back and its pending webhooks are dropped); a worker that stops gives its streams
back."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from vad.keys import Keys
from vad.streams import StreamRecord, StreamState
from workers.runtime.streams import StreamService


@dataclass
class Final:
    state: str
    reason: str | None


class StandIn:
    """Reports live, writes one score a tick until stopped (like StreamRunner.run)."""

    def __init__(self, record: StreamRecord, sink: Any) -> None:
        self.record, self.sink = record, sink

    def run(self, stop: threading.Event) -> Final:
        self.sink.writer.status(status="live", since=time.time(), fps=25.0)
        index = 0
        while not stop.wait(0.05):
            self.sink.writer.score({"last_score": 0.1}, {"index": index, "score": 0.1, "at": time.time()})
            index += 1
        return Final("stopped", "stopped")


def wait(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def env(live_redis) -> Iterator[tuple]:
    from service.settings import ServiceSettings
    from service.streams import StreamStore
    from workers.settings import WorkerSettings

    prefix = f"test-{secrets.token_hex(4)}:"
    settings = WorkerSettings(key_prefix=prefix, stream_lease_ttl_s=2, stream_allowlist=["127.0.0.1/32"])
    store = StreamStore(live_redis, ServiceSettings(key_prefix=prefix, stream_lease_ttl_s=2))
    ctx = SimpleNamespace(settings=settings, redis=live_redis)
    yield ctx, store
    found = list(live_redis.scan_iter(f"{prefix}*"))
    if found:
        live_redis.delete(*found)


def service(ctx: Any, name: str, capacity: int) -> StreamService:
    return StreamService(ctx, name, capacity=capacity, engine_factory=lambda model: None,
                         runner_factory=lambda record, engine, sink, settings: StandIn(record, sink)).start()


def create(store: Any, n: int) -> list[StreamRecord]:
    records = []
    for i in range(n):
        records.append(store.create(StreamRecord(id=f"s{i}-{secrets.token_hex(2)}", owner="k", name=f"cam {i}",
                                                 url="rtsp://127.0.0.1/x", display_url="rtsp://127.0.0.1/x",
                                                 created_at=time.time() + i)))
    return records


def test_a_worker_runs_up_to_its_capacity_and_the_rest_wait_as_queued(env) -> None:
    ctx, store = env
    records = create(store, 3)
    worker = service(ctx, "w1", capacity=1)
    try:
        wait(lambda: store.get(records[0].id, "k").status == StreamState.live)  # the oldest first
        time.sleep(0.5)
        shown = [store.get(r.id, "k") for r in records]
        assert [s.status for s in shown] == [StreamState.live, StreamState.queued, StreamState.queued]
        assert [store.queue_position(s) for s in shown] == [None, 0, 1]
        assert "free place" in (shown[1].reason or "")
        second = service(ctx, "w2", capacity=1)  # more capacity: the next in line starts
        try:
            wait(lambda: store.get(records[1].id, "k").status == StreamState.live)
            assert store.get(records[2].id, "k").status == StreamState.queued
            assert store.queue_position(store.get(records[2].id, "k")) == 0
            assert {w: info["capacity"] for w, info in store.workers().items()} == {"w1": 1, "w2": 1}
        finally:
            second.close()
        wait(lambda: store.get(records[1].id, "k").status == StreamState.queued)  # given back on stop
        assert store.get(records[1].id, "k").worker is None
    finally:
        worker.close()


def test_a_delete_stops_its_runner_within_a_second_and_a_lost_lease_stops_it_too(env) -> None:
    ctx, store = env
    records = create(store, 2)
    worker = service(ctx, "w1", capacity=2)
    keys = Keys(ctx.settings.key_prefix)
    try:
        wait(lambda: all(store.get(r.id, "k").status == StreamState.live for r in records))
        first, second = (worker.running[r.id].thread for r in records)
        assert first is not None and second is not None
        store.stop(store.get(records[0].id, "k"))
        deleted = time.monotonic()
        wait(lambda: not first.is_alive(), 1.0)
        assert time.monotonic() - deleted < 1.0
        length = ctx.redis.xlen(keys.stream_timeline(records[0].id))
        time.sleep(0.3)
        assert ctx.redis.xlen(keys.stream_timeline(records[0].id)) == length

        ctx.redis.delete(keys.stream_lease(records[1].id))  # as if the lease expired while this worker stalled
        ctx.redis.incr(keys.stream_fence(records[1].id))  # and another worker claimed it
        wait(lambda: not second.is_alive(), 3.0)  # at its next renewal or write it stops
        whys = {r.id: item.why for r in records if (item := worker.running.get(r.id)) is not None}
        assert all(why in ("lost", "fenced off") for why in whys.values())
    finally:
        worker.close()


def test_a_deleted_stream_stops_its_runner_within_a_second_leaves_no_key_and_drops_its_webhooks(
        env, monkeypatch, caplog) -> None:
    """The runner (writing a score every 50 ms) stops within a second of DELETE; none of its late writes, nor its
    worker's end of run, brings a key back; a webhook still queued for it is dropped, not sent."""
    import workers.runtime.streams as streams_module

    ctx, store = env
    caplog.set_level(logging.INFO, logger="workers.runtime.streams")
    sent: list[str] = []
    monkeypatch.setattr(streams_module, "deliver", lambda url, body, settings, what: sent.append(what) or True)
    keys = Keys(ctx.settings.key_prefix)
    record = store.create(StreamRecord(id=f"d-{secrets.token_hex(2)}", owner="k", url="rtsp://127.0.0.1/x",
                                       display_url="rtsp://127.0.0.1/x", callback_url="http://127.0.0.1:9/hook"))
    worker = service(ctx, "w1", capacity=1)
    try:
        wait(lambda: store.get(record.id, "k").status == StreamState.live)
        item = worker.running[record.id]
        thread = item.thread
        assert thread is not None
        entry = ctx.redis.xadd(keys.stream_events(record.id), {"kind": "open", "event": "{}"}).decode()
        store.delete(store.get(record.id, "k"))
        deleted = time.monotonic()
        ctx.redis.rpush(keys.stream_webhooks, f"{record.id} {entry}")  # a webhook not yet sent when it was deleted
        wait(lambda: not thread.is_alive(), 1.0)
        assert time.monotonic() - deleted < 1.0
        assert item.why == "fenced off"
        wait(lambda: ctx.redis.llen(keys.stream_webhooks) == 0, 5.0)  # taken by the sender
        time.sleep(0.5)  # a few more ticks of the claim loop and the late writes of the stand-in
        assert list(ctx.redis.scan_iter(f"{keys.stream(record.id)}*")) == []
        assert ctx.redis.zscore(keys.streams_active, record.id) is None
        assert sent == []  # dropped: nothing left to send
        assert f"stream {record.id}: webhook of event {entry} dropped: the stream was deleted" in caplog.text
        assert worker.send_webhook(record.id, entry) is False
    finally:
        worker.close()
    assert list(ctx.redis.scan_iter(f"{keys.stream(record.id)}*")) == []  # nor by giving it back on close


def test_a_stream_whose_runner_fails_is_failed_with_a_reason_that_quotes_no_password(env, caplog) -> None:
    ctx, store = env
    url = "rtsp://admin:hunter2@127.0.0.1/x"
    record = store.create(StreamRecord(id=f"f-{secrets.token_hex(2)}", owner="k", url=url,
                                       display_url="rtsp://***@127.0.0.1/x"))

    def broken(record: StreamRecord, engine: Any, sink: Any, settings: Any) -> Any:
        raise RuntimeError(f"could not open {url}: connection refused")

    worker = StreamService(ctx, "w1", capacity=1, engine_factory=lambda model: None, runner_factory=broken).start()
    try:
        wait(lambda: store.get(record.id, "k").status == StreamState.failed)
    finally:
        worker.close()
    failed = store.get(record.id, "k")
    assert failed.reason == "RuntimeError: could not open rtsp://***@127.0.0.1/x: connection refused"
    assert "hunter2" not in caplog.text and "stream" in caplog.text
    assert ctx.redis.zscore(Keys(ctx.settings.key_prefix).streams_active, record.id) is None  # never claimed again


def test_the_real_runner_keeps_evidence_of_the_stream_for_its_owner_unless_it_is_off(tmp_path, live_redis) -> None:
    from workers.runtime.streams import _evidence
    from workers.settings import WorkerSettings

    record = StreamRecord(id="s1", owner="o1", url="rtsp://127.0.0.1/sub", record_url="rtsp://127.0.0.1/main")
    sink = SimpleNamespace(writer=SimpleNamespace(conn=live_redis, keys=Keys("t:")))  # it registers its script
    settings = WorkerSettings(storage_dir=tmp_path, evidence_pre_roll_s=3.0, stream_min_event_s=1.0)
    evidence = _evidence(record, sink, settings)  # type: ignore[arg-type]
    source = evidence.store.source
    assert (source.kind, source.source_id, source.owner) == ("stream", "s1", "o1")
    assert evidence.record_url == "rtsp://127.0.0.1/main" and evidence.ring.pre_roll_s == 3.0 + 1.0
    assert _evidence(record, sink, WorkerSettings(storage_dir=tmp_path, evidence=False)) is None  # type: ignore[arg-type]


def test_the_runner_of_a_stream_reads_it_over_its_transport_and_continues_its_clock() -> None:
    from workers.runtime.streams import _real_runner
    from workers.settings import WorkerSettings
    from workers.stream.live_source import StreamClock

    settings = WorkerSettings(stream_rtsp_transport="udp", evidence=False)  # the runner alone, no storage
    engine = SimpleNamespace(settings=settings, visual_length=256, class_names=("normal", "fighting"))
    new = StreamRecord(id="s", url="rtsp://127.0.0.1/cam", transport="tcp")
    runner = _real_runner(new, engine, None, settings)
    assert runner.source.transport == "tcp" and runner.source.clock is None  # a new stream: its own clock
    taken = StreamRecord(id="s", url="rtsp://127.0.0.1/cam", clock_origin_at=1_700_000_000.0, last_index=104,
                         last_end_s=55.04)
    runner = _real_runner(taken, engine, None, settings)
    assert runner.source.transport == "udp"  # none asked for: the workers' default
    assert runner.source.clock == StreamClock(1_700_000_000.0, next_index=105, last_end_s=55.04)


class Tuned(StandIn):
    """Writes 160 s of stream time at once (low scores, a spike to 0.7 every 20 s), then waits; keeps a real event
    tracker that the service retunes."""

    def __init__(self, record: StreamRecord, sink: Any) -> None:
        from workers.stream.event_tracker import EventTracker

        super().__init__(record, sink)
        self.tracker = EventTracker(threshold=0.5, hysteresis=0.0, min_event_s=0.0, merge_gap_s=0.5,
                                    class_names=("normal", "x"))

    def retune(self, threshold: float, min_event_s: float) -> None:
        self.tracker.retune(threshold, min_event_s)

    def run(self, stop: threading.Event) -> Final:
        self.sink.writer.status(status="live", since=time.time(), fps=50.0)
        for k in range(500):
            score = 0.7 if k % 62 == 30 else 0.1 + 0.1 * ((k * 7919) % 13) / 13
            self.sink.writer.score({"last_score": score}, {"index": k, "start_s": round(k * 0.32, 6),
                                                           "end_s": round((k + 1) * 0.32, 6), "score": score,
                                                           "at": time.time()})
        stop.wait()
        return Final("stopped", "stopped")


def test_a_stream_calibrates_itself_on_its_first_minutes_and_follows_a_new_calibration_without_a_restart(env) -> None:
    from vad.alerts import AutoCalibrate

    ctx, store = env
    record = create(store, 1)[0]
    store.redis.hset(store.keys.stream(record.id), "auto_calibrate",
                     AutoCalibrate(minutes=2, target_false_alarms_per_hour=1).model_dump_json())
    runners: list[Tuned] = []
    worker = StreamService(ctx, "w1", capacity=1, engine_factory=lambda model: None,
                           runner_factory=lambda rec, engine, sink, settings: runners.append(Tuned(rec, sink))
                           or runners[-1]).start()
    try:
        wait(lambda: (a := store.get(record.id, "k").alert) is not None and a.source == "auto", 30.0)
        alert = store.get(record.id, "k").alert
        assert alert is not None and alert.threshold > 0.7 and alert.calibration is not None
        assert alert.calibration["normal_s"] == pytest.approx(120.0, abs=0.5)
        wait(lambda: runners[0].tracker.threshold == alert.threshold, 10.0)  # in force in the running tracker
        # a calibration through the API's store (a looser target): the running tracker follows within a tick
        now = time.time()
        again = store.calibrate(store.get(record.id, "k"), now - 300, now + 1, target=1000.0, min_event_s=0.0,
                                merge_gap_s=0.5, floor=0.0)
        assert again.source == "calibrated" and again.threshold < alert.threshold
        wait(lambda: runners[0].tracker.threshold == again.threshold, 10.0)
        assert len(runners) == 1  # the same runner: no restart
    finally:
        worker.close()
