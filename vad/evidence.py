"""Evidence of events, shared by the API and the workers: where it is stored, what its ``meta.json`` says, and how
it is deleted (with its job or stream) and swept (by age and total size).

Every event, live or from a job, has a UUID ``id``; its evidence is three objects and a description in the storage
(:mod:`vad.storage`, local or S3), under ``evidence/{event id}/``:

* ``snapshot.jpg``: the kept frame of the event's peak snippet, full size;
* ``thumbnail.jpg``: the same, ``VAD_EVIDENCE_THUMBNAIL_WIDTH`` pixels wide;
* ``clip.mp4``: the source's packets from the keyframe before the pre-roll to the end of the post-roll, remuxed
  (never re-encoded), ``+faststart``;
* ``meta.json``: :class:`EvidenceMeta` (the source, its owner, sizes, times). The API reads it to decide who may
  see the evidence; it is written last, so evidence without it is incomplete (and not served).

Which events of a job or stream have evidence is a Redis set (:meth:`vad.keys.Keys.evidence_index`); deleting the
job or stream deletes them (:func:`delete_source_evidence`) and leaves a tombstone so that a worker still writing
evidence of that source removes it again (:func:`source_deleted`).
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import redis
from pydantic import BaseModel, Field

from vad.keys import Keys
from vad.storage.base import EVIDENCE_DIR, Storage

log = logging.getLogger(__name__)

SourceKind = Literal["job", "stream"]

FILES: dict[str, str] = {"snapshot.jpg": "image/jpeg", "thumbnail.jpg": "image/jpeg", "clip.mp4": "video/mp4"}
"""The evidence files of an event and their media types."""
META_NAME = "meta.json"
MAX_META_BYTES = 64 * 1024
TOMBSTONE_S = 24 * 3600
"""How long a deleted source's tombstone stays: longer than any evidence takes to be written."""

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_event_id(text: str) -> bool:
    """Whether ``text`` is an event id (a lower-case UUID): nothing else ever becomes part of a storage key."""
    return bool(_UUID.fullmatch(text))


def evidence_key(event_id: str, name: str) -> str:
    """The storage key of one evidence file (``name`` one of :data:`FILES` or :data:`META_NAME`)."""
    if not is_event_id(event_id) or (name not in FILES and name != META_NAME):
        raise ValueError(f"no evidence key for event {event_id!r}, file {name!r}")
    return f"{EVIDENCE_DIR}/{event_id}/{name}"


class EvidenceMeta(BaseModel):
    """``evidence/{event id}/meta.json``."""

    event_id: str
    source: SourceKind = Field(description="What the event came from: a job (an upload) or a live stream.")
    source_id: str
    owner: str = Field("", description="Owner id of the API key that owns the job or stream ('' without keys).")
    created_at: float = Field(default_factory=time.time, description="Unix time the evidence was written.")
    start_s: float = Field(description="The event's start, in the source's seconds.")
    end_s: float = Field(description="The event's end, in the source's seconds.")
    peak_s: float | None = Field(None, description="Middle of the event's peak snippet (the snapshot's time).")
    clip_start_s: float | None = Field(None, description="Where the clip begins, in the source's seconds (the "
                                                         "keyframe at or before the pre-roll).")
    clip_end_s: float | None = Field(None, description="Where the clip ends, in the source's seconds.")
    clip_truncated: bool = Field(False, description="The clip begins later than the pre-roll asked for (a live "
                                                    "event longer than the ring buffer, or a reconnection).")
    sizes: dict[str, int] = Field(default_factory=dict, description="Bytes of each evidence file.")


def read_meta(storage: Storage, event_id: str) -> EvidenceMeta | None:
    """The event's ``meta.json``, or ``None`` when it has no (complete) evidence."""
    raw = storage.get_bytes(evidence_key(event_id, META_NAME), MAX_META_BYTES)
    if raw is None:
        return None
    try:
        return EvidenceMeta.model_validate_json(raw)
    except ValueError:
        log.warning("evidence of event %s has an unreadable meta.json; treated as absent", event_id)
        return None


def delete_event_evidence(storage: Storage, event_ids: list[str]) -> None:
    """Delete every evidence file of these events."""
    keys = [evidence_key(e, name) for e in event_ids if is_event_id(e) for name in (*FILES, META_NAME)]
    if keys:
        storage.delete_objects(keys)


def note_evidence(conn: redis.Redis, keys: Keys, kind: SourceKind, source_id: str, event_id: str,
                  ttl_s: int) -> None:
    """Record that ``event_id`` of this source has (or is getting) evidence: before it is written."""
    with conn.pipeline() as pipe:
        pipe.sadd(keys.evidence_index(kind, source_id), event_id)
        pipe.expire(keys.evidence_index(kind, source_id), ttl_s)
        pipe.execute()


def source_deleted(conn: redis.Redis, keys: Keys, kind: SourceKind, source_id: str) -> bool:
    """Whether the job or stream was deleted: evidence written for it since must go."""
    return bool(conn.exists(keys.evidence_deleted(kind, source_id)))


def delete_source_evidence(conn: redis.Redis, keys: Keys, storage: Storage, kind: SourceKind, source_id: str) -> int:
    """Delete the evidence of every event of a job or stream (its owner deleted it); how many events had some.

    The tombstone is set first: a worker that notes an event after the index was read finds it once its files
    are written, and deletes them itself.
    """
    conn.set(keys.evidence_deleted(kind, source_id), "1", ex=TOMBSTONE_S)
    found: Any = conn.smembers(keys.evidence_index(kind, source_id))
    event_ids = sorted(e.decode() if isinstance(e, bytes) else str(e) for e in found)
    delete_event_evidence(storage, event_ids)
    conn.delete(keys.evidence_index(kind, source_id))
    return len(event_ids)


@dataclass(frozen=True)
class StoredEvidence:
    """One event's evidence as the sweep sees it."""

    event_id: str
    size: int
    modified: float


def stored_evidence(storage: Storage) -> list[StoredEvidence]:
    """Every event with evidence in the storage, oldest first (by its newest file)."""
    sizes: dict[str, int] = defaultdict(int)
    modified: dict[str, float] = defaultdict(float)
    for item in storage.list_objects(f"{EVIDENCE_DIR}/"):
        event_id = item.key.split("/")[1] if item.key.count("/") >= 2 else ""
        if is_event_id(event_id):
            sizes[event_id] += item.size
            modified[event_id] = max(modified[event_id], item.modified)
    return sorted((StoredEvidence(e, sizes[e], modified[e]) for e in sizes), key=lambda s: (s.modified, s.event_id))


def sweep_evidence(storage: Storage, retention_s: float, max_bytes: int, now: float | None = None) -> list[str]:
    """Delete evidence older than ``retention_s``, then the oldest until the rest takes at most ``max_bytes``
    (0: no limit); the ids of the events whose evidence went."""
    now = time.time() if now is None else now
    stored = stored_evidence(storage)
    total = sum(s.size for s in stored)
    doomed = []
    for item in stored:  # oldest first
        if now - item.modified >= retention_s or (max_bytes and total > max_bytes):
            doomed.append(item.event_id)
            total -= item.size
    delete_event_evidence(storage, doomed)
    return doomed
