"""The event history shared by streams and jobs: one record shape, one index in Redis, verdicts (torch-free).

Every event, live or from a job, has a UUID and one record (:class:`EventRecord`): which stream or job it came
from, whose it is, its class and scores, its times, its state, its verdict and links to its evidence and score
curve. The records are written by the workers (a job's events when the job finishes: :meth:`EventIndex.add_job`;
a stream's when an event opens or closes, in the same Lua step as the stream's events entry:
:mod:`vad.streamlua`), read by the API (``GET /v1/events``), and given verdicts through it. Keys are in
:mod:`vad.keys`:

* a hash per event (``event:{id}``) with JSON-encoded fields: ``source``, ``source_id``, ``source_name``,
  ``owner``, ``threshold``, ``event`` (the event as its source reported it), ``state``, ``at`` (when it opened;
  a job's events: when the job finished), ``member`` and, once given, ``verdict``;
* two sorted sets of members ``<ms>:<event id>`` (``ms`` zero-padded, all scores 0): the owner's events and each
  source's. Lexicographic order is then time order, and a page's cursor is the last member it showed, so pages
  stay stable while new events arrive (they sort before the first page);
* ``events:reviewed``: the ids of events with a verdict, for ``vad export-reviews``.

Retention follows the source: a stream event lives as long as the stream's events entries
(``VAD_STREAM_RETENTION_S``), a job's as long as its result (``VAD_RESULT_TTL_S``); a deleted job's events go with
it (:meth:`EventIndex.delete_source`). A stream's ``DELETE`` stops it and keeps it readable for its retention,
so its events stay listed until then. Index members whose record expired are removed as listings meet them.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterable
from typing import Any, Literal

import redis
from pydantic import BaseModel, ConfigDict, Field

from vad.keys import Keys

SourceKind = Literal["stream", "job"]
VerdictKind = Literal["true_alert", "false_alarm"]
VERDICTS: tuple[str, ...] = ("true_alert", "false_alarm")
SCORES_PAD_S = 10.0
"""The score curve of an event covers it and this many seconds on either side."""
MAX_SCAN = 2000
"""A listing reads at most this many index entries per page; a page filtered down to fewer events than its limit
still has a ``next_cursor`` when entries remain."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Verdict(_Model):
    """What a person decided about an event."""

    verdict: VerdictKind = Field(description="true_alert: it was what the class says; false_alarm: it was not.")
    note: str = Field("", description="Free text from the reviewer.")
    by: str = Field(description="Who gave it: the API key's owner id (a fingerprint of the key, never the key).")
    at: float = Field(description="When it was given (Unix time).")


class VerdictBody(_Model):
    """``PUT /v1/events/{id}/verdict``."""

    verdict: VerdictKind = Field(description="true_alert or false_alarm.")
    note: str = Field("", max_length=2000, description="Optional free text (at most 2000 characters).")


class EventLinks(_Model):
    """Where to get more of the event (relative to the API's base URL)."""

    self: str
    snapshot: str = Field(description="JPEG of the frame of the event's peak snippet.")
    thumbnail: str = Field(description="A small JPEG of the same frame.")
    clip: str = Field(description="MP4 from a pre-roll before the event to a post-roll after it.")
    scores: str = Field(description=f"The score curve around the event (± {SCORES_PAD_S:g} s).")
    verdict: str = Field(description="PUT a verdict here, DELETE to withdraw it.")
    source: str = Field(description="The stream or job it came from.")


class EventRecord(_Model):
    """One event of a live stream or of an analysed video: the same shape for both."""

    id: str = Field(description="The event's UUID (the same in a stream's open and close updates).")
    source: SourceKind = Field(description="stream or job.")
    source_id: str = Field(description="The stream's or job's id.")
    source_name: str = Field(description="The stream's name or the video's file name.")
    owner: str = Field(description="Owner id of the API key it belongs to ('' without API keys).")
    class_: str = Field(alias="class", description="Most probable anomaly class over the event.")
    class_prob: float = Field(description="Mean probability of that class over the event.")
    start_s: float = Field(description="Start on the source's clock (stream time or video time), seconds.")
    end_s: float | None = Field(description="End on the same clock; null while a stream event is open.")
    start_at: float | None = Field(None, description="Wall-clock start (Unix time) when the source knows it.")
    end_at: float | None = Field(None, description="Wall-clock end (Unix time) when the source knows it.")
    peak_score: float
    mean_score: float
    opened_at: float = Field(description="When it opened (Unix time); a job's events: when the job finished. The "
                                         "history is ordered by this, newest first.")
    closed_at: float | None = Field(description="When it closed (a job's events: when the job finished).")
    state: Literal["open", "closed"]
    threshold: float | None = Field(description="The anomaly-score threshold that decided it (null: the workers' "
                                                "default, for a stream created without one).")
    verdict: Verdict | None = Field(None, description="The reviewer's verdict, if any.")
    links: EventLinks


class EventPage(_Model):
    """One page of ``GET /v1/events``, newest first."""

    events: list[EventRecord]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")


class EventScores(_Model):
    """The score curve around one event, one entry per snippet (columnar, on the source's clock)."""

    event_id: str
    start_s: list[float]
    end_s: list[float]
    score: list[float] = Field(description="Anomaly score per snippet, in [0, 1].")


def event_member(at: float, event_id: str) -> str:
    """The index member of an event: ``<ms, 15 digits>:<id>`` (the same format the Lua scripts write)."""
    return f"{int(at * 1000):015d}:{event_id}"


def member_id(member: str) -> str:
    return member.partition(":")[2]


def encode_cursor(member: str) -> str:
    return base64.urlsafe_b64encode(member.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str | None:
    """The member a cursor stands for, or ``None`` when it is not one of ours."""
    try:
        member = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    ms, sep, event_id = member.partition(":")
    return member if sep and len(ms) == 15 and ms.isdigit() and event_id else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def read_record(data: dict[Any, Any]) -> EventRecord | None:
    """The record in an event hash, or ``None`` when there is none or it cannot be read."""
    if not data:
        return None
    try:
        fields = {_text(k): json.loads(v) for k, v in data.items()}
        event = fields["event"]
        closed = fields["state"] == "closed"
        source, source_id, event_id = fields["source"], fields["source_id"], event["id"]
        base = f"/v1/events/{event_id}"
        return EventRecord.model_validate({
            "id": event_id, "source": source, "source_id": source_id, "source_name": fields.get("source_name") or "",
            "owner": fields.get("owner") or "", "class": event["class"], "class_prob": event["class_prob"],
            "start_s": event["start_s"], "end_s": event.get("end_s") if closed else None,
            "start_at": event.get("start_at"), "end_at": event.get("end_at") if closed else None,
            "peak_score": event["peak_score"], "mean_score": event["mean_score"], "opened_at": fields["at"],
            "closed_at": (event.get("closed_at") or fields["at"]) if closed else None, "state": fields["state"],
            "threshold": fields.get("threshold"), "verdict": fields.get("verdict"),
            "links": {"self": base, "snapshot": f"{base}/snapshot.jpg", "thumbnail": f"{base}/thumbnail.jpg",
                      "clip": f"{base}/clip.mp4", "scores": f"{base}/scores", "verdict": f"{base}/verdict",
                      "source": f"/v1/{source}s/{source_id}"}})
    except (ValueError, KeyError, TypeError):
        return None


# KEYS: the job's record, the owner's events index, the job's events index; ARGV: prefix of event
# records, TTL s, then the events as JSON [{key, member, fields}]. Written only while the job's record exists, so a
# job deleted meanwhile leaves no events behind (its DELETE removes what was written before).
ADD_JOB = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local events = cjson.decode(ARGV[3])
for _, e in ipairs(events) do
  local key = ARGV[1] .. e['id']
  redis.call('DEL', key)
  for field, value in pairs(e['fields']) do redis.call('HSET', key, field, value) end
  redis.call('EXPIRE', key, ARGV[2])
  redis.call('ZADD', KEYS[2], 0, e['member'])
  redis.call('ZADD', KEYS[3], 0, e['member'])
end
redis.call('EXPIRE', KEYS[3], ARGV[2])
return #events
"""

# KEYS: the source's events index, the reviewed set; ARGV: prefix of event records, prefix of owner indexes.
# Removes every event of one source: records, their members in the owner's index, their verdicts.
DELETE_SOURCE = """
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, member in ipairs(members) do
  local id = string.sub(member, 17)
  local owner = redis.call('HGET', ARGV[1] .. id, 'owner')
  if owner then redis.call('ZREM', ARGV[2] .. cjson.decode(owner), member) end
  redis.call('DEL', ARGV[1] .. id)
  redis.call('ZREM', KEYS[2], id)
end
redis.call('DEL', KEYS[1])
return #members
"""

# KEYS: the event's record, the reviewed set, the stats hash; ARGV: owner JSON, verdict JSON, its kind, now, length
# of the record key's prefix.
# Returns the verdict in force and whether this call changed it (a repeat of the same verdict and note does not).
SET_VERDICT = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return false end
local old = redis.call('HGET', KEYS[1], 'verdict')
if old then
  local o, n = cjson.decode(old), cjson.decode(ARGV[2])
  if o['verdict'] == n['verdict'] and o['note'] == n['note'] then return {old, 0} end
end
redis.call('HSET', KEYS[1], 'verdict', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], string.sub(KEYS[1], ARGV[5] + 1))
redis.call('HINCRBY', KEYS[3], 'verdicts:' .. ARGV[3], 1)
return {ARGV[2], 1}
"""

# KEYS: the event's record, the reviewed set, the stats hash; ARGV: owner JSON, length of the record key's prefix.
CLEAR_VERDICT = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return -1 end
if redis.call('HDEL', KEYS[1], 'verdict') == 0 then return 0 end
redis.call('ZREM', KEYS[2], string.sub(KEYS[1], ARGV[2] + 1))
redis.call('HINCRBY', KEYS[3], 'verdicts:withdrawn', 1)
return 1
"""


class EventIndex:
    """The event history in Redis: written by workers, read and reviewed through the API, exported by the CLI."""

    def __init__(self, conn: redis.Redis, keys: Keys) -> None:
        self.redis, self.keys = conn, keys
        self._add_job = conn.register_script(ADD_JOB)
        self._delete_source = conn.register_script(DELETE_SOURCE)
        self._set_verdict = conn.register_script(SET_VERDICT)
        self._clear_verdict = conn.register_script(CLEAR_VERDICT)

    def add_job(self, *, job_id: str, owner: str, name: str, threshold: float, finished_at: float,
                events: Iterable[dict[str, Any]], ttl_s: int) -> int:
        """Index a finished job's events (dicts as in its result: ``id``, ``class``, ...); how many were written
        (0 when the job's record is gone: deleted while it finished)."""
        rows = [{"id": e["id"], "member": event_member(finished_at, e["id"]),
                 "fields": {k: json.dumps(v) for k, v in {
                     "source": "job", "source_id": job_id, "source_name": name, "owner": owner, "threshold": threshold,
                     "event": e, "state": "closed", "at": finished_at,
                     "member": event_member(finished_at, e["id"])}.items()}} for e in events]
        if not rows:
            return 0
        return int(self._add_job(keys=[self.keys.job(job_id), self.keys.events_of_owner(owner),
                                       self.keys.events_of_source("job", job_id)],
                                 args=[self.keys.event(""), ttl_s, json.dumps(rows)]))

    def delete_source(self, kind: SourceKind, source_id: str) -> int:
        """Remove every event of a stream or job from the history (records, index entries, verdicts)."""
        return int(self._delete_source(keys=[self.keys.events_of_source(kind, source_id), self.keys.events_reviewed],
                                       args=[self.keys.event(""), self.keys.events_of_owner("")]))

    def get(self, event_id: str, owner: str | None = None) -> EventRecord | None:
        """One event; ``None`` when unknown, unreadable, or (``owner`` given) someone else's."""
        record = read_record(self.redis.hgetall(self.keys.event(event_id)))
        return None if record is None or (owner is not None and record.owner != owner) else record

    def page(self, owner: str, *, source: tuple[SourceKind, str] | None = None, cursor: str | None = None,
             limit: int = 50, since: float | None = None, until: float | None = None, class_: str | None = None,
             min_score: float | None = None, verdict: str | None = None) -> tuple[list[EventRecord], str | None]:
        """A page of the owner's events, newest first, and the cursor of the next one (``None`` at the end).

        Args:
            cursor: A member (from :func:`decode_cursor`): the page starts after it.
            verdict: ``true_alert``, ``false_alarm`` or ``none`` (no verdict yet).
        """
        index = self.keys.events_of_source(*source) if source else self.keys.events_of_owner(owner)
        high = f"({cursor}" if cursor else (f"({int(until * 1000) + 1:015d}" if until is not None else "+")
        low = f"[{max(0, int(since * 1000)):015d}" if since is not None else "-"
        found: list[EventRecord] = []
        scanned, last = 0, None
        while len(found) < limit and scanned < MAX_SCAN:
            batch = [_text(m) for m in self.redis.zrange(index, high, low, desc=True, bylex=True, offset=0,
                                                          num=min(MAX_SCAN - scanned, max(limit * 2, 50)))]
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
                if _matches(record, owner, class_, min_score, verdict):
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
        ids = [_text(i) for i in self.redis.zrange(self.keys.events_reviewed, 0, -1)]
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
             verdict: str | None) -> bool:
    if record.owner != owner or (class_ is not None and record.class_ != class_):
        return False
    if min_score is not None and record.peak_score < min_score:
        return False
    if verdict == "none":
        return record.verdict is None
    return verdict is None or (record.verdict is not None and record.verdict.verdict == verdict)
