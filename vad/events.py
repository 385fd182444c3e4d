"""The event history shared by streams and jobs: one record shape, its Redis layout and scripts (torch-free).

Every event, live or from a job, has a UUID and one record (:class:`EventRecord`): which stream or job it came
from, whose it is, its class and scores, its times, its state, its verdict and links to its evidence and score
curve. The workers write the records (a job's events when its result is recorded, with :data:`ADD_JOB`:
:mod:`workers.runtime.history`; a stream's when an event opens or closes, in the same Lua step as the stream's
events entry: :mod:`vad.streamlua`); the API reads them and takes verdicts (:mod:`service.events`). Keys are in
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
it, and so do a deleted stream's (:data:`DELETE_SOURCE`), with their verdicts and saved features. Index members
whose record expired are removed as listings meet them.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vad.evidence import SourceKind as SourceKind  # the history and the evidence name their sources alike

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
    """The opaque cursor of a page that ends at ``member``."""
    return member.replace(":", "", 1)


def decode_cursor(cursor: str) -> str | None:
    """The member a cursor stands for, or ``None`` when it is not one of ours."""
    ms, event_id = cursor[:15], cursor[15:]
    ok = len(ms) == 15 and ms.isdigit() and event_id and all(c.isalnum() or c in "-_" for c in event_id)
    return f"{ms}:{event_id}" if ok and event_id.isascii() else None


def _text(value: Any) -> str:
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
# Removes every event of one source: records, their members in the owner's index, their verdicts. Returns their ids.
DELETE_SOURCE = """
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local ids = {}
for _, member in ipairs(members) do
  local id = string.sub(member, 17)
  local owner = redis.call('HGET', ARGV[1] .. id, 'owner')
  if owner then redis.call('ZREM', ARGV[2] .. cjson.decode(owner), member) end
  redis.call('DEL', ARGV[1] .. id)
  redis.call('ZREM', KEYS[2], id)
  table.insert(ids, id)
end
redis.call('DEL', KEYS[1])
return ids
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


