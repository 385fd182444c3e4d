"""Every Redis key of ours, under one prefix (``VAD_KEY_PREFIX``, ``vad:`` by default), and how hash fields are
written. RQ keeps its own keys.

Jobs (:mod:`vad.jobstate`):

* ``{prefix}job:{id}``               hash: the job record (status, progress, settings, owner, ...)
* ``{prefix}result:{id}``            string: the result JSON (explicit TTL)
* ``{prefix}dedup:{owner}:{key}``    string: job id of the first job for (content sha256, settings)
* ``{prefix}models``                 hash: model name → description, published by live workers
* ``{prefix}stats``                  hash: counters and stage-duration sums written by the workers (metrics)
* ``{prefix}sweep``                  string: which supervisor sweeps the upload storage this minute

Live streams (:mod:`vad.streams`):

* ``{prefix}stream:{id}``            hash: the stream record (JSON-encoded fields, like the job record)
* ``{prefix}stream:{id}:lease``      string: ``<worker>/<token>`` of the owner, with a TTL (the lease)
* ``{prefix}stream:{id}:fence``      integer: the fencing counter (the last token given out)
* ``{prefix}stream:{id}:timeline``   Redis stream: one entry per scored snippet, trimmed to the timeline retention
* ``{prefix}stream:{id}:events``     Redis stream: one entry per event opened or closed (their ids are the SSE ids)
* ``{prefix}stream:{id}:frame``      hash: the stream's latest frame, ``jpeg``, ``at`` (unix time written), ``source_s``
                                     (its time on the stream clock); written every few seconds, with a TTL
* ``{prefix}streams:owner:{owner}``  sorted set: the stream ids of one API key (score: when the entry expires)
* ``{prefix}streams:active``         sorted set: streams not stopped or failed, oldest first (what workers claim)
* ``{prefix}streams:webhooks``       list: ``<stream id> <event entry id>`` of webhooks to send (any worker sends)
* ``{prefix}streams:workers``        hash: worker name → JSON ``{capacity, running, at}`` (stream-capable workers)
* ``{prefix}streams:control``        pub/sub channel: a stream id is published when the stream must stop now

Events of streams and jobs (:mod:`vad.events`):

* ``{prefix}event:{id}``             hash: one event's record (JSON-encoded fields), its verdict; TTL: its source's
* ``{prefix}events:owner:{owner}``   sorted set: the events of one API key, members ``<ms>:<event id>`` (all scores 0,
                                     so the lexicographic order is the time order: newest first with ``REV``)
* ``{prefix}events:{kind}:{id}``     sorted set: the same members, for one stream or job (``kind`` is the source)
* ``{prefix}events:reviewed``        sorted set: event ids with a verdict (score: when it was given), for the export

Evidence (:mod:`vad.evidence`):

* ``{prefix}evidence:{kind}:{id}``          set: the event ids of a job or stream (``kind``) that have evidence
* ``{prefix}evidence:deleted:{kind}:{id}``  string: the job or stream was deleted (a tombstone, with a TTL)
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any


class Keys:
    """Key names under one prefix: jobs, then live streams."""

    def __init__(self, prefix: str = "vad:") -> None:
        self.prefix = prefix

    # -- jobs ------------------------------------------------------------------------------------------------------

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def result(self, job_id: str) -> str:
        return f"{self.prefix}result:{job_id}"

    def dedup(self, owner: str, key: str) -> str:
        return f"{self.prefix}dedup:{owner}:{key}"

    @property
    def models(self) -> str:
        return f"{self.prefix}models"

    @property
    def stats(self) -> str:
        return f"{self.prefix}stats"

    @property
    def sweep(self) -> str:
        """Held for a minute by the supervisor that sweeps the upload storage, so that one of them does."""
        return f"{self.prefix}sweep"

    # -- live streams ----------------------------------------------------------------------------------------------

    def stream(self, stream_id: str) -> str:
        return f"{self.prefix}stream:{stream_id}"

    def stream_lease(self, stream_id: str) -> str:
        return f"{self.prefix}stream:{stream_id}:lease"

    def stream_fence(self, stream_id: str) -> str:
        return f"{self.prefix}stream:{stream_id}:fence"

    def stream_timeline(self, stream_id: str) -> str:
        return f"{self.prefix}stream:{stream_id}:timeline"

    def stream_events(self, stream_id: str) -> str:
        return f"{self.prefix}stream:{stream_id}:events"

    def stream_frame(self, stream_id: str) -> str:
        """Hash: the stream's latest frame as a JPEG (``jpeg``, ``at``, ``source_s``), with a TTL."""
        return f"{self.prefix}stream:{stream_id}:frame"

    def streams_of_owner(self, owner: str) -> str:
        return f"{self.prefix}streams:owner:{owner}"

    @property
    def streams_active(self) -> str:
        return f"{self.prefix}streams:active"

    @property
    def stream_webhooks(self) -> str:
        return f"{self.prefix}streams:webhooks"

    @property
    def stream_control(self) -> str:
        return f"{self.prefix}streams:control"

    @property
    def stream_workers(self) -> str:
        """Hash: worker name → JSON ``{capacity, running, at}``, refreshed by each stream-capable worker."""
        return f"{self.prefix}streams:workers"

    # -- the MQTT bridge (workers/mqtt) ----------------------------------------------------------------------------

    @property
    def mqtt_lock(self) -> str:
        """String: the name of the worker process that bridges to MQTT now (with a TTL)."""
        return f"{self.prefix}mqtt:bridge"

    @property
    def mqtt_streams(self) -> str:
        """Set: the stream ids being bridged (until ended and fully published)."""
        return f"{self.prefix}mqtt:streams"

    @property
    def mqtt_cursors(self) -> str:
        """Hash: stream id → the last event entry id the broker acknowledged."""
        return f"{self.prefix}mqtt:cursors"

    # -- events of streams and jobs (vad/events.py) -----------------------------------------------------------------

    def event(self, event_id: str) -> str:
        return f"{self.prefix}event:{event_id}"

    def events_of_owner(self, owner: str) -> str:
        return f"{self.prefix}events:owner:{owner}"

    def events_of_source(self, kind: str, source_id: str) -> str:
        """The events of one stream (``kind`` ``stream``) or job (``job``)."""
        return f"{self.prefix}events:{kind}:{source_id}"

    @property
    def events_reviewed(self) -> str:
        return f"{self.prefix}events:reviewed"

    # -- evidence (vad.evidence) --------------------------------------------------------------------------------

    def evidence_index(self, kind: str, source_id: str) -> str:
        """Set: the event ids of a job or stream whose evidence is stored."""
        return f"{self.prefix}evidence:{kind}:{source_id}"

    def evidence_deleted(self, kind: str, source_id: str) -> str:
        """String with a TTL: the job or stream was deleted, so evidence written for it since must go."""
        return f"{self.prefix}evidence:deleted:{kind}:{source_id}"

    def stream_script_keys(self, stream_id: str, owner: str) -> list[str]:
        """KEYS of the scripts in :mod:`vad.streamlua`, in their order."""
        return [self.stream(stream_id), self.stream_lease(stream_id), self.stream_fence(stream_id),
                self.stream_timeline(stream_id), self.stream_events(stream_id), self.streams_active,
                self.stream_webhooks, self.streams_of_owner(owner), self.events_of_owner(owner),
                self.events_of_source("stream", stream_id), self.event(""), self.stream_frame(stream_id)]


def encode_fields(**fields: Any) -> dict[Any, Any]:
    """Field updates for a job or stream hash, JSON-encoded like the records' ``to_redis``."""
    return {k: json.dumps(v.value if isinstance(v, Enum) else v) for k, v in fields.items()}
