"""Live streams in a worker process: up to ``streams_per_worker`` streams run in threads beside the RQ worker.

One loop claims queued (and orphaned) streams oldest first while this process has a free place, renews the lease
of each stream it runs every tick, and stops a stream at once when its renewal fails: another worker owns it, or
its owner stopped or deleted it. A listener on the control channel stops a stopped or deleted stream within a
second even when its source is silent. Every write of a stream goes through its
:class:`~workers.runtime.stream_owner.FencedWriter`.

Webhooks of events are queued in Redis in the same step as the event (:mod:`vad.streamlua`) and sent by one
thread per process (``LPOP``: each by one worker, at most once; a worker killed in the middle of a delivery
loses that one; those of a deleted stream are dropped). The models are the process's own
(:class:`~workers.runtime.context.JobContext`), shared by jobs and streams.

A worker that stops (SIGTERM) ends its streams, closes their open events and gives them back as ``queued`` for
another worker; one that dies (SIGKILL) leaves them until their lease expires, and another worker takes them over
within ``stream_lease_ttl_s`` plus a tick, closing the event the dead owner had open.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from vad.alerts import AlertThreshold, AutoCalibrate, CalibrationError, calibrate_points
from vad.bundles import BundleBook, shadow_rule
from vad.exceptions import BundleRefused, StreamRefused
from vad.keys import Keys
from vad.net.redact import redact_text
from vad.net.rules import check_stream_url, connect_url
from vad.storage.features import FeatureStore
from vad.streams import StreamRecord, StreamState
from workers.runtime.context import JobContext
from workers.runtime.notify import deliver
from workers.runtime.stream_owner import FencedWriter, Lease, RedisSink, claim
from workers.stream.live_source import StreamClock

log = logging.getLogger(__name__)

RunnerFactory = Callable[[StreamRecord, Any, RedisSink, Any], Any]
"""(record, engine, sink, settings) → an object with ``run(stop) -> StreamStatus`` (the real one by default)."""


def _real_runner(record: StreamRecord, engine: Any, sink: RedisSink, settings: Any) -> Any:
    from workers.stream.runner import StreamRunner

    return StreamRunner(record.url, engine, sink, settings, threshold=record.threshold, transport=record.transport,
                        resume=resumed_clock(record), evidence=_evidence(record, sink, settings))


def resumed_clock(record: StreamRecord) -> StreamClock | None:
    """The clock a new owner continues: the record's origin, the snippet after its last one, its last end.

    ``None`` for a stream no owner has read a frame of yet (its clock starts at its first frame).
    """
    if record.clock_origin_at is None:
        return None
    return StreamClock(origin_at=record.clock_origin_at,
                       next_index=0 if record.last_index is None else record.last_index + 1,
                       last_end_s=record.last_end_s or 0.0)


def _evidence(record: StreamRecord, sink: RedisSink, settings: Any) -> Any:
    """The stream's evidence keeper (snapshots and clips of its events), unless evidence is off."""
    if not settings.evidence:
        return None
    from vad.storage import open_storage
    from workers.evidence.store import EvidenceSource, EvidenceStore
    from workers.evidence.stream import StreamEvidence

    writer = sink.writer
    store = EvidenceStore(open_storage(settings), writer.conn, writer.keys,
                          EvidenceSource("stream", record.id, record.owner), settings.evidence_thumbnail_width,
                          settings.evidence_retention_s)
    return StreamEvidence(store, settings, record.record_url)


def _number(fields: dict[Any, Any], name: str) -> float:
    """A number field of a timeline entry (keys and values as bytes or text)."""
    value: Any = fields.get(name.encode(), fields.get(name))
    return float(value.decode() if isinstance(value, bytes) else value)


@dataclass
class _Running:
    lease: Lease
    writer: FencedWriter
    stop: threading.Event = field(default_factory=threading.Event)
    why: str | None = None  # fenced off (stopped, deleted or taken over), lost, shutdown
    thread: threading.Thread | None = None
    runner: Any = None  # once built: its threshold is retuned when the record's alert changes
    alert: str | None = None  # the record's alert field (JSON) last put in force
    auto: AutoCalibrate | None = None  # the automatic calibration still to do
    default_floor: float = 0.5
    engine: Any = None
    bundles: tuple[str, str] | None = None  # the (active, shadow) bundle ids the runner has


class StreamService:
    """The streams of one worker process.

    Args:
        ctx: The process's context (settings, Redis, models).
        worker: This process's name (the lease holder).
        capacity: Streams at most; default ``streams_per_worker``.
        runner_factory: Builds a runner (tests); the real :class:`~workers.stream.runner.StreamRunner` by default.
        engine_factory: Builds the models of a model name (tests); the context's analyzer's by default.
        features: Where each closing event's snippet features are saved (for verdicts); none: not saved.
    """

    def __init__(self, ctx: JobContext, worker: str, capacity: int | None = None,
                 runner_factory: RunnerFactory = _real_runner,
                 engine_factory: Callable[[str | None], Any] | None = None,
                 features: FeatureStore | None = None) -> None:
        self.ctx, self.settings, self.conn, self.worker = ctx, ctx.settings, ctx.redis, worker
        self.features = features
        self.keys = Keys(self.settings.key_prefix)
        self.capacity = self.settings.streams_per_worker if capacity is None else capacity
        self.tick_s = min(1.0, self.settings.stream_lease_ttl_s / 4)
        self.runner_factory = runner_factory
        self.engine_factory = engine_factory or self._engine
        self.running: dict[str, _Running] = {}
        self._engines: dict[str | None, Any] = {}
        self._lock = threading.Lock()
        self._engine_lock = threading.Lock()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._mqtt: Any = None
        self._heads: Any = None

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> StreamService:
        for target, name in ((self._loop, "vad-streams"), (self._listen, "vad-stream-control"),
                             (self._send_webhooks, "vad-stream-webhooks")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._mqtt = self._start_mqtt()
        log.info("live streams: up to %d in this worker process", self.capacity)
        return self

    def close(self, timeout_s: float = 15.0) -> None:
        """Stop every stream (their open events close) and give them back as queued for another worker."""
        self._closing.set()
        with self._lock:
            running = list(self.running.values())
        for item in running:
            item.why = item.why or "shutdown"
            item.stop.set()
        deadline = time.monotonic() + timeout_s
        for item in running:
            if item.thread is not None:
                item.thread.join(max(0.1, deadline - time.monotonic()))
            item.writer.release("its worker stopped; waiting for another")
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        if self._mqtt is not None:
            self._mqtt.close()
        with contextlib.suppress(redis.RedisError):
            self.conn.hdel(self.keys.stream_workers, self.worker)

    def _start_mqtt(self) -> Any:
        """MQTT (issue 19): the bridge that publishes every stream's events from Redis, when a broker is set."""
        if not self.settings.mqtt_host:
            return None
        from workers.mqtt.bridge import MqttBridge  # paho is imported only where MQTT is on

        return MqttBridge(self.conn, self.settings, self.worker).start()

    # -- the loop: leases, claims ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._closing.wait(self.tick_s):
            try:
                self.beat()
                self.claim_free_places()
            except redis.RedisError as exc:  # Redis away: leases expire, another worker takes over; keep trying
                log.warning("live streams: Redis unavailable (%s)", exc)
            except Exception:
                log.exception("live streams: the claim loop failed; trying again")

    def beat(self) -> None:
        """Renew every lease (a refused renewal stops its stream), forget ended streams, announce this worker."""
        with self._lock:
            items = list(self.running.items())
        for stream_id, item in items:
            if item.thread is not None and not item.thread.is_alive():
                with self._lock:
                    self.running.pop(stream_id, None)
            elif not item.stop.is_set() and item.writer.renew():
                self.follow_alert(stream_id, item)
                self.follow_bundles(stream_id, item)
        with self._lock:
            ids = sorted(self.running)
        now = time.time()
        self.conn.hset(self.keys.stream_workers, self.worker, json.dumps({"capacity": self.capacity, "running": ids,
                                                                   "at": now, "clip_precision": self._precisions()}))
        stale = [name for name, info in self.conn.hgetall(self.keys.stream_workers).items()
                 if json.loads(info).get("at", 0) < now - 3 * self.settings.stream_lease_ttl_s]
        if stale:  # workers that died without saying so
            self.conn.hdel(self.keys.stream_workers, *stale)

    def follow_alert(self, stream_id: str, item: _Running) -> None:
        """Put the record's threshold in force when the API changed it (a calibration, a verdict), and run the
        stream's automatic calibration once its first minutes are scored."""
        if item.runner is None or not hasattr(item.runner, "retune"):
            return
        raw: Any = self.conn.hget(self.keys.stream(stream_id), "alert")
        text = raw.decode() if isinstance(raw, bytes) else raw
        if text and text != "null" and text != item.alert:
            alert = AlertThreshold.model_validate_json(text)
            item.runner.retune(alert.threshold, alert.min_event_s)
            item.alert = text
            log.info("stream %s: threshold %.6f in force (%s)", stream_id, alert.threshold, alert.source)
            if alert.source != "default":
                item.auto = None  # calibrated (or moved by a verdict) already: no automatic calibration
        if item.auto is not None:
            self._auto_calibrate(stream_id, item, item.auto)

    def _auto_calibrate(self, stream_id: str, item: _Running, auto: AutoCalibrate) -> None:
        """Calibrate on the stream's first ``auto.minutes`` from its timeline, once they are all scored."""
        key = self.keys.stream_timeline(stream_id)
        first: Any = self.conn.xrange(key, "-", "+", count=1)
        last: Any = self.conn.xrevrange(key, "+", "-", count=1)
        if not first or not last:
            return
        start = _number(first[0][1], "start_s")
        span = auto.minutes * 60
        if _number(last[0][1], "end_s") - start < span:
            return
        item.auto = None
        entries: Any = self.conn.xrange(key, first[0][0], "+", count=int(span * 10) + 100)
        points = [(_number(f, "score"), _number(f, "start_s"), _number(f, "end_s")) for _, f in entries]
        points = sorted((p for p in points if p[1] < start + span), key=lambda p: p[1])
        tracker = item.runner.tracker
        try:
            result = calibrate_points(points, target_per_hour=auto.target_false_alarms_per_hour,
                                      min_event_s=tracker.min_event_s, merge_gap_s=tracker.merge_gap_s,
                                      floor=item.default_floor)
        except CalibrationError as exc:
            log.warning("stream %s: automatic calibration not done: %s", stream_id, exc)
            return
        alert = AlertThreshold(threshold=result.threshold, min_event_s=result.min_event_s, source="auto",
                               at=time.time(), reason=f"the stream's first {auto.minutes:g} minutes",
                               calibration=result.to_dict())
        if item.writer.status(alert=alert.model_dump(mode="json")):
            item.alert = json.dumps(alert.model_dump(mode="json"))
            item.runner.retune(alert.threshold, alert.min_event_s)
            log.info("stream %s: automatic calibration: threshold %.6f", stream_id, alert.threshold)

    def _in_force(self, record: StreamRecord, item: _Running, runner: Any) -> None:
        """The threshold a new owner puts in force: the record's, else the default it starts with (recorded)."""
        item.auto = record.auto_calibrate
        item.default_floor = record.threshold if record.threshold is not None else self.settings.threshold
        if not hasattr(runner, "retune"):
            return
        if record.alert is not None:
            runner.retune(record.alert.threshold, record.alert.min_event_s)
            item.alert = json.dumps(record.alert.model_dump(mode="json"))
            if record.alert.source != "default":
                item.auto = None
        else:
            tracker = runner.tracker
            alert = AlertThreshold(threshold=tracker.threshold, min_event_s=tracker.min_event_s, source="default",
                                   at=time.time())
            if item.writer.status(alert=alert.model_dump(mode="json")):
                item.alert = json.dumps(alert.model_dump(mode="json"))
        item.runner = runner

    def _precisions(self) -> dict[str, str]:
        """The precisions of this process's stream encoders, and how each was chosen (for ``/metrics``)."""
        return dict(getattr(self.ctx, "stream_precisions", {}))  # tests run the service on a bare namespace

    def claim_free_places(self) -> None:
        """Claim streams without a live lease, oldest first, while this process has room."""
        if self._closing.is_set() or len(self.running) >= self.capacity:
            return
        found: Any = self.conn.zrange(self.keys.streams_active, 0, 199)
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in found]
        candidates = [i for i in ids if i not in self.running]
        if not candidates:
            return
        with self.conn.pipeline() as pipe:
            for stream_id in candidates:
                pipe.exists(self.keys.stream_lease(stream_id))
                pipe.hget(self.keys.stream(stream_id), "owner")
            answers = pipe.execute()
        for i, stream_id in enumerate(candidates):
            leased, owner = answers[2 * i], answers[2 * i + 1]
            if leased or len(self.running) >= self.capacity or self._closing.is_set():
                continue
            lease = claim(self.conn, self.keys, stream_id, json.loads(owner) if owner else "", self.worker,
                          self.settings)
            if lease is not None:
                self._start(lease)

    def _start(self, lease: Lease) -> None:
        item = _Running(lease, FencedWriter(self.conn, self.keys, lease, self.settings))
        item.writer.on_lost = lambda reason: self._lost(item, reason)
        item.thread = threading.Thread(target=self._run, args=(item,), name=f"vad-stream {lease.stream_id}",
                                       daemon=True)
        with self._lock:
            self.running[lease.stream_id] = item
        log.info("stream %s: claimed (token %d)", lease.stream_id, lease.token)
        item.thread.start()

    def _lost(self, item: _Running, reason: str) -> None:
        item.why = item.why or ("fenced off" if reason == "fenced" else "lost")
        item.stop.set()

    # -- one stream -----------------------------------------------------------------------------------------

    def _run(self, item: _Running) -> None:
        stream_id = item.lease.stream_id
        state, reason, url = StreamState.failed, "the stream could not be started", ""
        try:
            record = StreamRecord.read(stream_id, self.conn.hgetall(self.keys.stream(stream_id)))
            if record is None:
                item.writer.lose("gone")
                return
            url = record.url
            target = check_stream_url(url, self.settings.stream_allowlist)  # again: the policy or DNS may have changed
            # the reader connects to the address just checked when the host is allowed for its addresses, not its name
            update = {"url": connect_url(target)}
            if record.record_url:
                update["record_url"] = connect_url(check_stream_url(record.record_url, self.settings.stream_allowlist))
            record = record.model_copy(update=update)
            url = record.url
            log.info("stream %s: starting %s", stream_id, record.display_url)
            sink = RedisSink(item.writer, record, self.features, self.settings.stream_normal_windows)
            item.engine = self.engine_factory(record.model)
            runner = self.runner_factory(record, item.engine, sink, self.settings)
            self._in_force(record, item, runner)
            item.runner = runner
            self.follow_bundles(stream_id, item)
            final = runner.run(item.stop)
            state = StreamState.failed if final.state == "failed" else StreamState.stopped
            reason = final.reason or ("the source ended" if state == StreamState.stopped else "failed")
        except StreamRefused as exc:
            reason = f"the stream URL is no longer allowed: {exc}"
        except Exception as exc:  # a model or configuration problem: the stream fails with the reason, never the worker
            reason = f"{type(exc).__name__}: {exc}"
            # no traceback: a decoder's error can quote the URL, password included
            log.error("stream %s failed: %s", stream_id, redact_text(reason, url or None))
        finally:
            self._end(item, state, redact_text(reason, url or None))

    def _end(self, item: _Running, state: StreamState, reason: str) -> None:
        stream_id = item.lease.stream_id
        if item.why == "shutdown":
            item.writer.release("its worker stopped; waiting for another")
        elif item.why is None:
            item.writer.finish(state, reason)
            log.info("stream %s: %s (%s)", stream_id, state.value, reason)
        else:
            log.info("stream %s: stopped here (%s)", stream_id, item.why)

    # -- per-camera bundles (issue 20: shadow, promotion, rollback) -------------------------------------------------

    def follow_bundles(self, stream_id: str, item: _Running) -> None:
        """Give the stream's runner the bundles its record names (no restart), report the shadow's tally, and
        promote the shadow once its rule holds (``adapt_auto_promote``). A bundle that cannot be loaded leaves the
        runner as it was (logged) and is tried again at the next beat."""
        set_heads = getattr(item.runner, "set_heads", None)
        if set_heads is None or item.engine is None:
            return
        key = self.keys.stream_bundles(stream_id)
        try:
            book = BundleBook.read(self.conn.hgetall(key))
            wanted = (book.active, book.shadow)
            if wanted != item.bundles:
                heads = self._stream_heads()
                set_heads(heads.get(stream_id, book.active, item.engine),
                          heads.get(stream_id, book.shadow, item.engine))
                item.bundles = wanted
                with self._lock:
                    used = {(i, b) for i, r in self.running.items() for b in (r.bundles or ()) if b}
                heads.keep(used)
                log.info("stream %s: active bundle %s, shadow %s", stream_id, book.active or "(the model)",
                         book.shadow or "(none)")
            stats = getattr(item.runner, "shadow_stats", None)
            if book.shadow and stats is not None:
                self.conn.hset(key, f"shadow_stats:{book.shadow}", stats.model_dump_json())
                ok, _ = shadow_rule(stats, self.settings.adapt_shadow_min_snippets)
                if ok and self.settings.adapt_auto_promote:
                    fresh = BundleBook.read(self.conn.hgetall(key))
                    if fresh.apply(self.conn, key, fresh.promote(self.settings.adapt_shadow_min_snippets)):
                        log.info("stream %s: bundle %s promoted from shadow", stream_id, book.shadow)
        except BundleRefused as exc:
            log.info("stream %s: %s", stream_id, exc)
        except redis.RedisError:
            raise
        except Exception as exc:  # a bundle that cannot be loaded: the stream goes on with what it has
            log.warning("stream %s: its bundles could not be loaded: %s", stream_id, exc)

    def _stream_heads(self) -> Any:
        if self._heads is None:
            from vad.storage import open_storage
            from workers.runtime.adapt import StreamHeads

            self._heads = StreamHeads(self.features.storage if self.features is not None
                                      else open_storage(self.settings))
        return self._heads

    def _engine(self, model: str | None) -> Any:
        from workers.stream.online import StreamEngine

        with self._engine_lock:
            if model not in self._engines:
                analyzer = self.ctx.analyzer(model)
                encoder, _ = self.ctx.stream_encoder(analyzer)
                self._engines[model] = StreamEngine.from_analyzer(analyzer, encoder=encoder)
            return self._engines[model]

    # -- stop requests and webhooks ---------------------------------------------------------------------------

    def _listen(self) -> None:
        """Stop a stream as soon as its owner stops or deletes it (the API publishes its id)."""
        while not self._closing.is_set():
            try:
                pubsub = self.conn.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.keys.stream_control)
                while not self._closing.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None:
                        continue
                    data = message["data"]
                    stream_id = data.decode() if isinstance(data, bytes) else str(data)
                    with self._lock:
                        item = self.running.get(stream_id)
                    if item is not None:
                        item.writer.lose("fenced")
                pubsub.close()
            except redis.RedisError as exc:
                log.warning("live streams: control channel lost (%s); resubscribing", exc)
                self._closing.wait(1.0)

    def _send_webhooks(self) -> None:
        while not self._closing.is_set():
            try:
                item: Any = self.conn.lpop(self.keys.stream_webhooks)
                if item is None:
                    self._closing.wait(0.5)
                    continue
                stream_id, entry_id = (item.decode() if isinstance(item, bytes) else str(item)).split(" ", 1)
                self.send_webhook(stream_id, entry_id)
            except redis.RedisError as exc:
                log.warning("live streams: webhooks paused, Redis unavailable (%s)", exc)
                self._closing.wait(1.0)
            except Exception:
                log.exception("live streams: a webhook could not be sent")

    def send_webhook(self, stream_id: str, entry_id: str) -> bool:
        """POST one event entry to its stream's callback URL, signed like job callbacks."""
        record = StreamRecord.read(stream_id, self.conn.hgetall(self.keys.stream(stream_id)))
        if record is None:  # deleted (DELETE removes its events too): nothing left to send
            log.info("stream %s: webhook of event %s dropped: the stream was deleted", stream_id, entry_id)
            return False
        found: list[Any] = self.conn.xrange(self.keys.stream_events(stream_id), entry_id, entry_id)  # type: ignore[assignment]
        if not record.callback_url or not found:
            return False
        fields = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                  for k, v in found[0][1].items()}
        body = json.dumps({"stream_id": stream_id, "name": record.name, "event_id": entry_id, "kind": fields["kind"],
                           "reason": fields.get("reason") or None, "at": float(fields.get("at") or 0),
                           "event": json.loads(fields["event"])}).encode()
        return deliver(record.callback_url, body, self.settings, f"stream {stream_id}")
