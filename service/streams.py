"""Live streams in Redis, the API's side: create, read, list, stop and delete streams; read their events and timeline.

The workers own running streams (:mod:`workers.runtime.streams`); the API never writes to a stream a worker owns
except through :data:`vad.streamlua.STOP` and :data:`vad.streamlua.DELETE`, which fence the owner off in the same
step, and :data:`vad.streamlua.SET_ALERT`, which puts a new threshold in force (a calibration, a verdict) that the
owner reads every tick.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from service.exceptions import StreamNotFound
from service.settings import ServiceSettings
from vad.alerts import AlertThreshold, Calibration, CalibrationError, calibrate_points, threshold_after_false_alarm
from vad.keys import Keys
from vad.streamlua import DELETE, SET_ALERT, STOP
from vad.streams import StreamRecord, StreamState

DEFAULT_THRESHOLD = 0.5
"""The threshold the verdict rule starts from for a stream no worker has put a threshold in force for yet and that
was created without one (the workers' default VAD_THRESHOLD)."""
MAX_CALIBRATION_POINTS = 200_000
"""Timeline points one calibration reads at most (18 hours of 0.32 s snippets)."""

ORPHAN_REASON = "its worker stopped renewing its lease; waiting to be taken over"
WORKER_REASON = "waiting for a worker with a free place"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Entry:
    """One entry of a stream's events or timeline: its Redis stream id and fields."""

    id: str
    fields: dict[str, str]

    @classmethod
    def of(cls, raw: tuple[Any, Any]) -> Entry:
        entry_id, fields = raw
        return cls(_text(entry_id), {_text(k): _text(v) for k, v in fields.items()})


def event_body(entry: Entry) -> dict[str, Any]:
    """An events entry as the API shows it (what SSE sends as ``data:`` and JSON lists)."""
    f = entry.fields
    return {"id": entry.id, "kind": f.get("kind", ""), "reason": f.get("reason") or None,
            "at": float(f.get("at") or 0), "event": json.loads(f.get("event") or "{}")}


def score_body(entry: Entry) -> dict[str, Any]:
    """A timeline entry as the API shows it."""
    f = entry.fields

    def num(key: str) -> float | None:
        return float(f[key]) if f.get(key) not in (None, "") else None

    return {"id": entry.id, "index": int(f.get("index") or 0), "start_s": num("start_s"), "end_s": num("end_s"),
            "score": num("score"), "class_probs": json.loads(f.get("class_probs") or "[]"), "at": num("at"),
            "lag_s": num("lag_s")}


class StreamStore:
    """Stream records and their Redis streams; every call may raise redis' connection errors (503 upstream)."""

    def __init__(self, conn: redis.Redis, settings: ServiceSettings) -> None:
        self.redis, self.settings = conn, settings
        self.keys = Keys(settings.key_prefix)
        self._stop = conn.register_script(STOP)
        self._delete = conn.register_script(DELETE)
        self._set_alert = conn.register_script(SET_ALERT)

    def create(self, record: StreamRecord) -> StreamRecord:
        """Store a new stream as queued; workers claim it from the active set (oldest first)."""
        with self.redis.pipeline() as pipe:
            pipe.hset(self.keys.stream(record.id), mapping=record.to_redis())
            pipe.set(self.keys.stream_fence(record.id), 0)
            pipe.zadd(self.keys.streams_of_owner(record.owner), {record.id: "+inf"})
            pipe.zadd(self.keys.streams_active, {record.id: record.created_at})
            pipe.execute()
        return record

    def get(self, stream_id: str, owner: str) -> StreamRecord:
        """The record as clients see it; 404 for unknown ids and other keys' streams."""
        record = StreamRecord.read(stream_id, self.redis.hgetall(self.keys.stream(stream_id)))
        if record is None or record.owner != owner:
            raise StreamNotFound(f"no stream {stream_id}")
        return self.shown(record)

    def shown(self, record: StreamRecord) -> StreamRecord:
        """A running stream whose lease is gone is queued again until a worker takes it over: say so."""
        if record.status.terminal or record.status == StreamState.queued:
            if record.status == StreamState.queued and not record.reason:
                record.reason = WORKER_REASON
            return record
        if not self.redis.exists(self.keys.stream_lease(record.id)):
            record.status, record.reason = StreamState.queued, ORPHAN_REASON
        return record

    def for_owner(self, owner: str) -> list[StreamRecord]:
        """The key's streams, newest first (stopped ones until their retention ends)."""
        index = self.keys.streams_of_owner(owner)
        self.redis.zremrangebyscore(index, "-inf", f"({time.time()}")
        ids = [_text(i) for i in self.redis.zrange(index, 0, -1)]
        with self.redis.pipeline() as pipe:
            for stream_id in ids:
                pipe.hgetall(self.keys.stream(stream_id))
            found = pipe.execute()
        records = []
        for stream_id, data in zip(ids, found, strict=True):
            record = StreamRecord.read(stream_id, data)
            if record is None:
                self.redis.zrem(index, stream_id)
            elif record.owner == owner:
                records.append(self.shown(record))
        return sorted(records, key=lambda r: -r.created_at)

    def queue_position(self, record: StreamRecord) -> int | None:
        """0 = next to be taken by a worker; ``None`` when the stream is not waiting."""
        if record.status != StreamState.queued:
            return None
        ids = [_text(i) for i in self.redis.zrange(self.keys.streams_active, 0, -1)]
        if record.id not in ids:
            return None
        ahead = ids[: ids.index(record.id)]
        if not ahead:
            return 0
        with self.redis.pipeline() as pipe:
            for stream_id in ahead:
                pipe.exists(self.keys.stream_lease(stream_id))
            leased = pipe.execute()
        return sum(1 for held in leased if not held)

    def stop(self, record: StreamRecord, reason: str = "stopped by its owner") -> None:
        """Stop the stream for good: its owner is fenced off and told at once; the rest is kept for the retention."""
        now = time.time()
        self._stop(keys=self.keys.stream_script_keys(record.id, record.owner),
                   args=[record.id, repr(now), self.settings.stream_retention_s, json.dumps(reason),
                         self.events_minid(now), self.keys.stream_control])

    def delete(self, record: StreamRecord) -> None:
        """Delete the stream now: its owner (if any) is fenced off and told at once, and its record, lease, fence,
        timeline and events are removed with its place in the active set and its key's index (one script).

        Raises:
            StreamNotFound: It was deleted (or its retention ended) since ``record`` was read.
        """
        if not self._delete(keys=self.keys.stream_script_keys(record.id, record.owner),
                            args=[record.id, self.keys.stream_control]):
            raise StreamNotFound(f"no stream {record.id}")

    def frame(self, stream_id: str) -> tuple[bytes, float] | None:
        """The stream's latest frame (JPEG) and the unix time its worker wrote it; ``None`` when there is none (its
        worker writes one every VAD_STREAM_SNAPSHOT_EVERY_S; it expires a while after the stream stops)."""
        found: list[Any] = self.redis.hmget(self.keys.stream_frame(stream_id), ["jpeg", "at"])
        jpeg, at = found
        if not jpeg:
            return None
        return bytes(jpeg), float(at or 0)

    def events_minid(self, now: float) -> str:
        return str(int((now - self.settings.stream_retention_s) * 1000))

    def events(self, stream_id: str, after: str = "-", count: int = 1000) -> list[Entry]:
        """Events entries after the id ``after`` (exclusive; ``-`` from the first)."""
        start = f"({after}" if after != "-" else "-"
        found: list[Any] = self.redis.xrange(self.keys.stream_events(stream_id), start, "+", count=count) or []
        return [Entry.of(e) for e in found]

    def timeline(self, stream_id: str, since_s: float | None, until_s: float | None, count: int) -> list[Entry]:
        """Timeline entries written between two unix times (inclusive), oldest first."""
        start = str(int(since_s * 1000)) if since_s is not None else "-"
        end = str(int(until_s * 1000)) if until_s is not None else "+"
        found: list[Any] = self.redis.xrange(self.keys.stream_timeline(stream_id), start, end, count=count) or []
        return [Entry.of(e) for e in found]

    def workers(self) -> dict[str, dict[str, Any]]:
        """Stream-capable workers that reported recently: name → {capacity, running, at, clip_precision}."""
        raw: dict[Any, Any] = self.redis.hgetall(self.keys.stream_workers)
        fresh = time.time() - 3 * self.settings.stream_lease_ttl_s
        found = {_text(k): json.loads(v) for k, v in raw.items()}
        return {name: info for name, info in found.items() if info.get("at", 0) >= fresh}

    def model_classes(self, model: str | None) -> list[str]:
        """The class names of a model (``None``: the workers' default), as the workers announced them."""
        raw: dict[Any, Any] = self.redis.hgetall(Keys(self.settings.key_prefix).models)
        announced = {_text(k): json.loads(v) for k, v in raw.items()}
        info: dict[str, Any] = announced.get(model or "default") or next(iter(announced.values()), {})
        return [str(c) for c in info.get("classes", [])]

    def records(self, ids: list[str]) -> list[StreamRecord]:
        """Records of ``ids`` (those that can be read)."""
        with self.redis.pipeline() as pipe:
            for stream_id in ids:
                pipe.hgetall(self.keys.stream(stream_id))
            found = pipe.execute()
        return [r for i, d in zip(ids, found, strict=True) if (r := StreamRecord.read(i, d)) is not None]

    # -- the threshold in force (vad.alerts) -------------------------------------------------------------------------

    def calibrate(self, record: StreamRecord, since: float, until: float, *, target: float, min_event_s: float,
                  merge_gap_s: float, floor: float | None) -> AlertThreshold:
        """Calibrate the stream on its timeline between two unix times and put the threshold in force.

        Raises:
            CalibrationError: The timeline does not hold enough scores of that window (or a setting is invalid).
            StreamNotFound: The stream was deleted meanwhile.
        """
        found: list[Any] = self.redis.xrange(self.keys.stream_timeline(record.id), str(int(since * 1000)),
                                             str(int(until * 1000)), count=MAX_CALIBRATION_POINTS) or []
        points = []
        for entry in (Entry.of(e) for e in found):
            try:
                points.append((float(entry.fields["score"]), float(entry.fields["start_s"]),
                               float(entry.fields["end_s"])))
            except (KeyError, ValueError):
                continue
        points.sort(key=lambda p: p[1])
        base = record.threshold if record.threshold is not None else DEFAULT_THRESHOLD
        try:
            result = calibrate_points(points, target_per_hour=target, min_event_s=min_event_s,
                                      merge_gap_s=merge_gap_s, floor=base if floor is None else floor)
        except CalibrationError as exc:
            kept = self.settings.stream_timeline_retention_s
            raise CalibrationError(f"{exc} (the stream's timeline holds {len(points)} scores between {since:.0f} "
                                   f"and {until:.0f}; it keeps the last {kept} s, VAD_STREAM_TIMELINE_RETENTION_S)"
                                   ) from exc
        return self._put(record.id, lambda _: _calibrated(result, since, until))

    def after_false_alarm(self, record: StreamRecord, event_id: str, peak: float, true_peaks: list[float]
                          ) -> AlertThreshold | None:
        """The verdict rule (:func:`vad.alerts.threshold_after_false_alarm`) on a false alarm of this stream; the
        alert in force afterwards, or ``None`` when the stream is gone."""
        def raised(current: AlertThreshold | None) -> AlertThreshold | None:
            level = current.threshold if current is not None else (
                record.threshold if record.threshold is not None else DEFAULT_THRESHOLD)
            new = threshold_after_false_alarm(level, peak, true_peaks)
            if current is not None and new == current.threshold:
                return None  # already above it: nothing to change
            lowest = min(true_peaks) if true_peaks else None
            why = (f"false alarm {event_id} (peak {peak:.4f})"
                   + (f"; kept below the lowest confirmed true alert's peak {lowest:.4f}" if lowest is not None
                      and new < min(1.0, peak) else ""))
            return AlertThreshold(threshold=new, min_event_s=current.min_event_s if current else 0.0,
                                  source="verdict", at=time.time(), reason=why,
                                  calibration=current.calibration if current else None)
        try:
            return self._put(record.id, raised)
        except StreamNotFound:
            return None

    def _put(self, stream_id: str, make: Any) -> AlertThreshold:
        """Compare-and-set the record's ``alert`` to ``make(current)`` (retried when another write won)."""
        key = self.keys.stream(stream_id)
        for _ in range(5):
            raw = self.redis.hget(key, "alert")
            if raw is None and not self.redis.exists(key):
                raise StreamNotFound(f"no stream {stream_id}")
            text = _text(raw) if raw is not None else "null"
            current = AlertThreshold.model_validate_json(text) if text != "null" else None
            new = make(current)
            if new is None:
                return current  # type: ignore[return-value]  # nothing to change (only the verdict rule)
            answer = self._set_alert(keys=[key], args=[new.model_dump_json(), text])
            if answer is None:
                raise StreamNotFound(f"no stream {stream_id}")
            if int(answer) == 1:
                return new
        raise CalibrationError("the stream's threshold kept changing meanwhile; try again")


def _calibrated(result: Calibration, since: float, until: float) -> AlertThreshold:
    return AlertThreshold(threshold=result.threshold, min_event_s=result.min_event_s, source="calibrated",
                          at=time.time(), reason=f"normal footage from {since:.0f} to {until:.0f} (unix time)",
                          calibration=result.to_dict())

