"""Evidence in the storage (:mod:`vad.evidence` names it): reading an event's ``meta.json``, deleting the evidence
of a deleted job or stream, and the retention sweep (by age, then by total size).

Which events of a job or stream have evidence is a Redis set (:meth:`vad.keys.Keys.evidence_index`), noted before
any file is written; deleting the job or stream sets a tombstone first, then deletes every event of the set, so that
a worker that noted an event after the set was read finds the tombstone once its files are written and deletes
them itself. ``conn`` is a Redis client (``redis.Redis``), passed in: this infrastructure imports no Redis client.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from vad.evidence import EVIDENCE_DIR, FILES, META_NAME, EvidenceMeta, SourceKind, evidence_key, is_event_id
from vad.keys import Keys
from vad.storage.base import Storage

log = logging.getLogger(__name__)

MAX_META_BYTES = 64 * 1024
TOMBSTONE_S = 24 * 3600
"""How long a deleted source's tombstone stays: longer than any evidence takes to be written."""


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


def note_evidence(conn: Any, keys: Keys, kind: SourceKind, source_id: str, event_id: str,
                  ttl_s: int) -> None:
    """Record that ``event_id`` of this source has (or is getting) evidence: before it is written."""
    with conn.pipeline() as pipe:
        pipe.sadd(keys.evidence_index(kind, source_id), event_id)
        pipe.expire(keys.evidence_index(kind, source_id), ttl_s)
        pipe.execute()


def source_deleted(conn: Any, keys: Keys, kind: SourceKind, source_id: str) -> bool:
    """Whether the job or stream was deleted: evidence written for it since must go."""
    return bool(conn.exists(keys.evidence_deleted(kind, source_id)))


def delete_source_evidence(conn: Any, keys: Keys, storage: Storage, kind: SourceKind, source_id: str) -> int:
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
