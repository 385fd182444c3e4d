"""The event history as the API serves it (:mod:`vad.events` has the records, keys and scripts): pages, records,
verdicts, the score curve around an event, and the verdict counters of /metrics."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any, cast

import redis

from service.streams import StreamStore, score_body
from vad.events import (
    CLEAR_VERDICT,
    DELETE_SOURCE,
    MAX_SCAN,
    SCORES_PAD_S,
    SET_VERDICT,
    VERDICTS,
    EventRecord,
    EventScores,
    SourceKind,
    Verdict,
    VerdictBody,
    member_id,
    read_record,
)
from vad.exceptions import StorageError
from vad.keys import Keys
from vad.storage import Storage
from vad.storage.features import FeatureStore

if TYPE_CHECKING:  # the job store deletes a job's events through this module
    from service.store import JobStore

TIMELINE_SLACK_S = 60.0
"""How much earlier than its opening a stream event's first snippet may have been scored (the minimum event length
and scoring lag), when its part of the timeline is looked up by wall-clock time."""


log = logging.getLogger(__name__)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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


class EventIndex:
    """The event history in Redis as the API (and ``vad export-reviews``) reads it: pages, records, verdicts, a job's
    events deleted with it. The workers write it (:mod:`workers.runtime.history`, :mod:`vad.streamlua`)."""

    def __init__(self, conn: redis.Redis, keys: Keys) -> None:
        self.redis, self.keys = conn, keys
        self._delete_source = conn.register_script(DELETE_SOURCE)
        self._set_verdict = conn.register_script(SET_VERDICT)
        self._clear_verdict = conn.register_script(CLEAR_VERDICT)

    def forget(self, kind: SourceKind, source_id: str, storage: Storage) -> list[str]:
        """Remove every event of a deleted stream or job from the history (records, index entries, verdicts) and
        their saved features; the ids of the events removed. Features that cannot be deleted now are logged (the
        supervisor's sweep removes them later)."""
        found = self._delete_source(keys=[self.keys.events_of_source(kind, source_id), self.keys.events_reviewed],
                                    args=[self.keys.event(""), self.keys.events_of_owner("")])
        ids = [_text(i) for i in found]
        features = FeatureStore(storage)
        try:
            for name in [source_id] if kind == "job" else ids:
                features.delete(name)
        except StorageError as exc:
            log.warning("saved features of deleted %s %s stay until the sweep removes them: %s", kind, source_id,
                        exc)
        return ids

    def get(self, event_id: str, owner: str | None = None) -> EventRecord | None:
        """One event; ``None`` when unknown, unreadable, or (``owner`` given) someone else's."""
        record = read_record(self.redis.hgetall(self.keys.event(event_id)))
        return None if record is None or (owner is not None and record.owner != owner) else record

    def raw_event(self, event_id: str) -> dict[str, Any] | None:
        """The event as its source last reported it (a stream's close: with its snippet indices)."""
        raw = self.redis.hget(self.keys.event(event_id), "event")
        try:
            event = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        return event if isinstance(event, dict) else None

    def newest_ids(self, kind: SourceKind, source_id: str, count: int) -> list[str]:
        """The ids of the source's ``count`` newest events (by when they opened), newest first."""
        members = self.redis.zrange(self.keys.events_of_source(kind, source_id), "+", "-", desc=True, bylex=True,
                                    offset=0, num=count)
        return [member_id(_text(m)) for m in cast(list[bytes], members)]

    def page(self, owner: str, *, source: tuple[SourceKind, str] | None = None, cursor: str | None = None,
             limit: int = 50, since: float | None = None, until: float | None = None, class_: str | None = None,
             min_score: float | None = None, verdict: str | None = None,
             reviewed: bool | None = None) -> tuple[list[EventRecord], str | None]:
        """A page of the owner's events, newest first, and the cursor of the next one (``None`` at the end).

        Args:
            cursor: A member (from :func:`decode_cursor`): the page starts after it.
            verdict: ``true_alert``, ``false_alarm`` or ``none`` (no verdict yet).
            reviewed: ``True``: only events with a verdict (either); ``False``: only those without.
        """
        index = self.keys.events_of_source(*source) if source else self.keys.events_of_owner(owner)
        high = f"({cursor}" if cursor else (f"({int(until * 1000) + 1:015d}" if until is not None else "+")
        low = f"[{max(0, int(since * 1000)):015d}" if since is not None else "-"
        found: list[EventRecord] = []
        scanned, last = 0, None
        while len(found) < limit and scanned < MAX_SCAN:
            batch = [_text(m) for m in cast(list[bytes], self.redis.zrange(
                index, high, low, desc=True, bylex=True, offset=0, num=min(MAX_SCAN - scanned, max(limit * 2, 50))))]
            if not batch:
                return found, None
            with self.redis.pipeline(transaction=False) as pipe:
                for member in batch:
                    pipe.hgetall(self.keys.event(member_id(member)))
                hashes = pipe.execute()
            for member, data in zip(batch, hashes, strict=True):
                scanned, last = scanned + 1, member
                record = read_record(data)
                if record is None:  # expired with its source (or unreadable): the index forgets it
                    self.redis.zrem(index, member)
                    continue
                if _matches(record, owner, class_, min_score, verdict, reviewed):
                    found.append(record)
                    if len(found) == limit:
                        break
            high = f"({last}"
        if last is None:
            return found, None
        more = self.redis.zrange(index, high, low, desc=True, bylex=True, offset=0, num=1)
        return found, (last if more else None)

    def set_verdict(self, event_id: str, owner: str, body: VerdictBody) -> tuple[EventRecord, bool] | None:
        """Record a verdict (idempotent); the record and whether it changed, or ``None`` for no such event."""
        verdict = Verdict(verdict=body.verdict, note=body.note, by=owner, at=time.time())
        key = self.keys.event(event_id)
        answer = self._set_verdict(keys=[key, self.keys.events_reviewed, self.keys.stats],
                                   args=[json.dumps(owner), verdict.model_dump_json(), body.verdict, repr(verdict.at),
                                         len(self.keys.event(""))])
        if not answer:
            return None
        record = self.get(event_id, owner)
        return (record, bool(int(answer[1]))) if record is not None else None

    def clear_verdict(self, event_id: str, owner: str) -> bool | None:
        """Withdraw a verdict: ``True`` if there was one, ``False`` if none, ``None`` for no such event."""
        answer = int(self._clear_verdict(keys=[self.keys.event(event_id), self.keys.events_reviewed,
                                               self.keys.stats], args=[json.dumps(owner), len(self.keys.event(""))]))
        return None if answer < 0 else bool(answer)

    def reviewed(self) -> list[EventRecord]:
        """Every event with a verdict (all owners), oldest verdict first; ids whose record expired are dropped."""
        ids = [_text(i) for i in cast(list[bytes], self.redis.zrange(self.keys.events_reviewed, 0, -1))]
        records = []
        for event_id in ids:
            record = self.get(event_id)
            if record is None or record.verdict is None:
                self.redis.zrem(self.keys.events_reviewed, event_id)
            else:
                records.append(record)
        return records

    def verdict_counts(self) -> dict[str, float]:
        """Verdicts recorded since the start, by kind, and withdrawals (``withdrawn``)."""
        raw = self.redis.hgetall(self.keys.stats)
        counts = {_text(k).removeprefix("verdicts:"): float(v) for k, v in raw.items()
                  if _text(k).startswith("verdicts:")}
        return {kind: counts.get(kind, 0.0) for kind in (*VERDICTS, "withdrawn")}


def _matches(record: EventRecord, owner: str, class_: str | None, min_score: float | None,
             verdict: str | None, reviewed: bool | None = None) -> bool:
    if record.owner != owner or (class_ is not None and record.class_ != class_):
        return False
    if min_score is not None and record.peak_score < min_score:
        return False
    if reviewed is not None and (record.verdict is not None) != reviewed:
        return False
    if verdict == "none":
        return record.verdict is None
    return verdict is None or (record.verdict is not None and record.verdict.verdict == verdict)
