"""A worker's ownership of one stream: the claim, the heartbeat, and every write fenced by the claim's token.

:func:`claim` takes a stream's lease and its fencing token in one step (:data:`vad.streamlua.CLAIM`).
:class:`FencedWriter` sends each write through :data:`vad.streamlua.WRITE`, which refuses it once another worker
claimed the stream, the owner deleted it, or the lease expired; the first refusal calls ``on_lost`` (the runner
stops) and every later write is dropped without a round trip. :class:`RedisSink` is the
:class:`~workers.stream.runner.StreamSink` that turns a runner's statuses, scores and events into those writes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from vad.exceptions import StorageError
from vad.keys import Keys, encode_fields
from vad.net.redact import redact_text
from vad.settings import QueueSettings
from vad.storage.features import FeatureStore
from vad.streamlua import CLAIM, RELEASE, RENEW, WRITE
from vad.streams import StreamRecord, StreamState
from workers.runtime.history import npy_bytes
from workers.stream.event_tracker import EventUpdate
from workers.stream.online import SnippetScore
from workers.stream.runner import StreamStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lease:
    """A claim: the stream, whose API key it belongs to, the claiming worker and the fencing token it got."""

    stream_id: str
    owner: str
    worker: str
    token: int

    @property
    def holder(self) -> str:
        """The lease key's value while this claim holds it."""
        return f"{self.worker}/{self.token}"


def _minid(now: float, retention_s: float) -> str:
    return str(max(0, int((now - retention_s) * 1000)))


def claim(conn: redis.Redis, keys: Keys, stream_id: str, owner: str, worker: str, settings: QueueSettings
          ) -> Lease | None:
    """Take the stream if nobody holds its lease and it has not ended; a dangling open event of a dead owner is
    closed in the same step. ``None`` when it is not claimable."""
    now = time.time()
    token = conn.register_script(CLAIM)(
        keys=keys.stream_script_keys(stream_id, owner),
        args=[stream_id, worker, int(settings.stream_lease_ttl_s * 1000), repr(now),
              _minid(now, settings.stream_retention_s)])
    return None if token is None else Lease(stream_id, owner, worker, int(token))


class FencedWriter:
    """The owner's writes to one stream; each is refused unless the lease and the fence are still this claim's."""

    def __init__(self, conn: redis.Redis, keys: Keys, lease: Lease, settings: QueueSettings,
                 on_lost: Callable[[str], None] = lambda reason: None) -> None:
        self.conn, self.keys, self.lease, self.settings = conn, keys, lease, settings
        self.on_lost = on_lost
        self.refused: str | None = None
        self._write = conn.register_script(WRITE)
        self._renew = conn.register_script(RENEW)
        self._release = conn.register_script(RELEASE)
        self._keys = keys.stream_script_keys(lease.stream_id, lease.owner)

    def _send(self, op: str, minid: str, *args: Any) -> str | None:
        if self.refused is not None:
            return None
        now = time.time()
        answer = self._write(keys=self._keys, args=[self.lease.stream_id, self.lease.holder, self.lease.token, op,
                                                    repr(now), minid, *args])
        outcome = [a.decode() if isinstance(a, bytes) else a for a in answer]
        if outcome[0] == "ok":
            return str(outcome[1])
        self.lose(str(outcome[0]))
        return None

    def lose(self, reason: str) -> None:
        """Stop writing (once): the lease is no longer this claim's."""
        if self.refused is None:
            self.refused = reason
            log.warning("stream %s: write refused (%s): this worker no longer owns it; stopping it",
                        self.lease.stream_id, reason)
            self.on_lost(reason)

    def status(self, **fields: Any) -> bool:
        pairs = [x for kv in encode_fields(**fields).items() for x in kv]
        return self._send("status", "", *pairs) is not None

    def score(self, record_fields: dict[str, Any], entry: dict[str, Any]) -> str | None:
        pairs = [x for kv in encode_fields(**record_fields).items() for x in kv]
        flat = [str(x) for kv in entry.items() for x in kv]
        minid = _minid(time.time(), self.settings.stream_timeline_retention_s)
        return self._send("score", minid, len(pairs) // 2, *pairs, *flat)

    def event(self, kind: str, event: dict[str, Any], reason: str) -> str | None:
        minid = _minid(time.time(), self.settings.stream_retention_s)
        return self._send("event", minid, kind, json.dumps(event), reason)

    def finish(self, state: StreamState, reason: str) -> bool:
        """End the stream for good (``stopped`` or ``failed``): close its open event, keep it for the retention."""
        minid = _minid(time.time(), self.settings.stream_retention_s)
        return self._send("finish", "", json.dumps(state.value), json.dumps(reason), self.settings.stream_retention_s,
                          minid) is not None

    def renew(self) -> bool:
        """Extend the lease; ``False`` (and ``on_lost``) when it is no longer this claim's."""
        if self.refused is not None:
            return False
        renewed = self._renew(keys=self._keys, args=[self.lease.holder, self.lease.token,
                                                     int(self.settings.stream_lease_ttl_s * 1000)])
        if not renewed:
            self.lose("lease lost")
        return bool(renewed)

    def release(self, reason: str) -> bool:
        """Give the stream back (queued) for another worker, if this claim still holds it."""
        if self.refused is not None:
            return False
        self.refused = "released"
        return bool(self._release(keys=self._keys, args=[self.lease.holder, self.lease.token, repr(time.time()),
                                                         json.dumps(reason)]))


class RedisSink:
    """A runner's findings, written to Redis through a :class:`FencedWriter` (credentials scrubbed from reasons).

    Counters the runner keeps per run (drops, reconnections) continue the record's, so they add up across owners.
    The stream clock's origin and the last snippet's number and end go into the record with each status and score
    (fenced like every write): a worker that takes the stream over continues them.
    """

    def __init__(self, writer: FencedWriter, record: StreamRecord, features: FeatureStore | None = None) -> None:
        self.writer, self.url, self.features = writer, record.url, features
        self.base_dropped, self.base_reconnects = record.snippets_dropped, record.reconnects
        self._state: str | None = None

    def _clean(self, text: str | None) -> str | None:
        return redact_text(text, self.url) if text else text

    def status(self, status: StreamStatus) -> None:
        fields: dict[str, Any] = {
            "fps": status.fps, "width": status.width, "height": status.height, "lag_s": status.lag_s,
            "snippets_dropped": self.base_dropped + status.snippets_dropped,
            "reconnects": self.base_reconnects + status.reconnects, "clip_precision": status.clip_precision}
        if status.clock is not None:
            fields["clock_origin_at"] = status.clock.origin_at
        if status.state not in ("stopped", "failed") and status.state != self._state:
            fields.update(status=status.state, reason=self._clean(status.reason), since=status.since)
            self._state = status.state
        self.writer.status(**fields)

    def score(self, score: SnippetScore) -> None:
        self.writer.score(
            {"last_score": score.score, "last_score_at": score.scored_at, "lag_s": score.lag_s,
             "last_end_s": score.end_s, "last_index": score.index},
            {"index": score.index, "start_s": round(score.start_s, 6), "end_s": round(score.end_s, 6),
             "score": round(score.score, 6), "class_probs": json.dumps([round(p, 6) for p in score.class_probs]),
             "at": score.scored_at if score.scored_at is not None else time.time(),
             "lag_s": round(score.lag_s, 6) if score.lag_s is not None else "",
             "token": self.writer.lease.token})

    def event(self, update: EventUpdate) -> None:
        """Record the update; on close, save the event's features first (for verdicts), when they were kept: the
        close then says which snippet their first row is (``features_from_index``)."""
        event = update.event.to_dict()
        if update.kind == "close" and update.features is not None and self.features is not None:
            features, from_index = update.features
            try:
                self.features.put(update.event.id, npy_bytes(features))
                event["features_from_index"] = from_index
            except StorageError as exc:  # only a verdict's export misses them
                log.warning("stream %s: the features of event %s were not saved: %s", self.writer.lease.stream_id,
                            update.event.id, exc)
        self.writer.event(update.kind, event, self._clean(update.reason) or "")
