"""Writing one event's evidence to the storage: snapshot, thumbnail, clip, then ``meta.json`` (the key layout and
the deletion rules are :mod:`vad.evidence`'s)."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis

from vad.evidence import FILES, META_NAME, EvidenceMeta, SourceKind, evidence_key
from vad.keys import Keys
from vad.storage.base import Storage
from vad.storage.evidence import delete_event_evidence, note_evidence, source_deleted
from workers.evidence.snapshot import jpeg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipSpan:
    """What a clip writer wrote: its span in the source's seconds, and whether it begins later than asked."""

    start_s: float
    end_s: float
    truncated: bool = False


ClipWriter = Callable[[Path], ClipSpan | None]
"""Writes the clip to the given path; ``None`` when there is nothing to cut."""


@dataclass(frozen=True)
class EvidenceSource:
    """Whose events these are: a job or a stream, and the owner id of its API key."""

    kind: SourceKind
    source_id: str
    owner: str


class EvidenceStore:
    """Writes evidence of one job's or stream's events (see :meth:`save`).

    Args:
        storage: Where evidence goes.
        conn: Redis (the evidence index and the deletion tombstones).
        keys: Our Redis keys.
        source: The job or stream.
        thumbnail_width: Width of thumbnails.
        retention_s: How long evidence is kept (the index expires with it).
    """

    def __init__(self, storage: Storage, conn: redis.Redis, keys: Keys, source: EvidenceSource,
                 thumbnail_width: int, retention_s: int) -> None:
        self.storage, self.conn, self.keys, self.source = storage, conn, keys, source
        self.thumbnail_width, self.retention_s = thumbnail_width, retention_s

    def save(self, event_id: str, start_s: float, end_s: float, snapshot: np.ndarray | None,
             peak_s: float | None, clip: ClipWriter | None) -> EvidenceMeta | None:
        """Write what there is of the event's evidence; ``None`` when its source was deleted meanwhile (nothing
        stays). ``meta.json`` is written last: evidence is served only once it is complete."""
        kind, source_id = self.source.kind, self.source.source_id
        note_evidence(self.conn, self.keys, kind, source_id, event_id, self.retention_s)
        if source_deleted(self.conn, self.keys, kind, source_id):
            return None
        meta = EvidenceMeta(event_id=event_id, source=kind, source_id=source_id, owner=self.source.owner,
                            start_s=round(start_s, 6), end_s=round(end_s, 6),
                            peak_s=None if peak_s is None else round(peak_s, 6))
        with tempfile.TemporaryDirectory(prefix="vad-evidence-") as tmp:
            folder = Path(tmp)
            if snapshot is not None:
                for name, width in (("snapshot.jpg", None), ("thumbnail.jpg", self.thumbnail_width)):
                    path = folder / name
                    path.write_bytes(jpeg(snapshot, width))
                    self._put(meta, name, path)
            if clip is not None:
                path = folder / "clip.mp4"
                started = time.perf_counter()
                span = clip(path)
                if span is not None and path.is_file():
                    meta.clip_start_s, meta.clip_end_s = round(span.start_s, 6), round(span.end_s, 6)
                    meta.clip_truncated = span.truncated
                    self._put(meta, "clip.mp4", path)
                    log.info("event %s: clip of %.1f s (%d bytes) in %.3f s", event_id, span.end_s - span.start_s,
                             meta.sizes["clip.mp4"], time.perf_counter() - started)
            meta.created_at = time.time()
            path = folder / META_NAME
            path.write_text(meta.model_dump_json())
            self.storage.put_file(evidence_key(event_id, META_NAME), path, "application/json")
        if source_deleted(self.conn, self.keys, kind, source_id):  # deleted while this was written
            delete_event_evidence(self.storage, [event_id])
            return None
        return meta

    def _put(self, meta: EvidenceMeta, name: str, path: Path) -> None:
        self.storage.put_file(evidence_key(meta.event_id, name), path, FILES[name])
        meta.sizes[name] = path.stat().st_size
