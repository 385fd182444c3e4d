"""Evidence of events, shared by the API and the workers: where it is stored and what its ``meta.json`` says.

Every event, live or from a job, has a UUID ``id``; its evidence is three objects and a description in the storage
(:mod:`vad.storage`, local or S3), under ``evidence/{event id}/``:

* ``snapshot.jpg``: the kept frame of the event's peak snippet, full size;
* ``thumbnail.jpg``: the same, ``VAD_EVIDENCE_THUMBNAIL_WIDTH`` pixels wide;
* ``clip.mp4``: the source's packets from the keyframe before the pre-roll to the end of the post-roll, remuxed
  (never re-encoded), ``+faststart``;
* ``meta.json``: :class:`EvidenceMeta` (the source, its owner, sizes, times). The API reads it to decide who may
  see the evidence; it is written last, so evidence without it is incomplete (and not served).

Reading, deleting and sweeping it is :mod:`vad.storage.evidence`'s: which events of a job or stream have evidence
is a Redis set (:meth:`vad.keys.Keys.evidence_index`); deleting the job or stream deletes them and leaves a
tombstone so that a worker still writing evidence of that source removes it again.
"""

from __future__ import annotations

import re
import time
from typing import Literal

from pydantic import BaseModel, Field

SourceKind = Literal["job", "stream"]

FILES: dict[str, str] = {"snapshot.jpg": "image/jpeg", "thumbnail.jpg": "image/jpeg", "clip.mp4": "video/mp4"}
"""The evidence files of an event and their media types."""
META_NAME = "meta.json"
EVIDENCE_DIR = "evidence"
"""The folder (or key prefix) of all evidence, beside the uploads."""

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
