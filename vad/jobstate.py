"""The job record shared by the API and the workers: its Redis keys and fields (torch-free).

RQ keeps its own keys; ours live under one prefix (``vad:`` by default):

* ``{prefix}job:{id}``            hash: the job record (status, progress, settings, owner, ...)
* ``{prefix}result:{id}``         string: the result JSON (explicit TTL)
* ``{prefix}dedup:{owner}:{key}`` string: job id of the first job for (content sha256, settings)
* ``{prefix}models``              hash: model name → description, published by live workers
* ``{prefix}stats``               hash: counters and stage-duration sums written by the workers (metrics)
"""

from __future__ import annotations

import json
import logging
import time
from enum import Enum, StrEnum
from typing import Any

from pydantic import BaseModel, Field

JOB_FUNCTION = "workers.queue.jobs.analyze_job"  # referenced by name: the API never imports the workers
FAILURE_CALLBACK = "workers.queue.jobs.on_job_failure"

log = logging.getLogger(__name__)


class JobStatus(StrEnum):
    queued = "queued"
    started = "started"
    finished = "finished"
    failed = "failed"
    canceled = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.finished, JobStatus.failed, JobStatus.canceled)


class JobOptions(BaseModel):
    """What the client asked for; part of the dedup key."""

    model: str | None = Field(None, description="Model name served by the workers; their default when omitted.")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Anomaly-score threshold for events.")
    frame_scores: bool = Field(False, description="Also return one score per decoded frame.")

    def dedup_key(self) -> str:
        return json.dumps(self.model_dump(), sort_keys=True)


class JobRecord(BaseModel):
    """Our view of a job; the workers update status and progress, the API reads it."""

    id: str
    owner: str = ""
    status: JobStatus = JobStatus.queued
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    stage: str = "queued"
    percent: float = 0.0
    error: str | None = None
    attempts: int = 0
    filename: str = "video"
    sha256: str = ""
    size_bytes: int = 0
    container: str = ""
    video_path: str = ""
    options: JobOptions = Field(default_factory=JobOptions)
    callback_url: str | None = None
    dedup_key: str | None = None

    def to_redis(self) -> dict[Any, Any]:  # Any: redis-py's mapping type is invariant in its key
        return {k: json.dumps(v) for k, v in self.model_dump(mode="json").items()}

    @classmethod
    def from_redis(cls, data: dict[Any, Any]) -> JobRecord:
        decoded = {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in data.items()}
        return cls.model_validate(decoded)

    @classmethod
    def read(cls, job_id: str, data: dict[Any, Any]) -> JobRecord | None:
        """The record in the hash of job ``job_id``, or ``None`` when there is none or it cannot be read.

        A hash that is not a whole record (fields a worker wrote after the record was deleted, a field of another
        version) is logged and treated as gone, so that no reader (API route, worker, supervisor) fails on it.
        """
        if not data:
            return None
        try:
            return cls.from_redis(data)
        except ValueError as exc:  # JSON, UTF-8 and validation errors alike
            fields = sorted(k.decode() if isinstance(k, bytes) else k for k in data)
            log.warning("job record %s cannot be read (fields %s), treated as gone: %s", job_id, fields,
                        " ".join(str(exc).split())[:300])
            return None


class Keys:
    """Key names under one prefix."""

    def __init__(self, prefix: str = "vad:") -> None:
        self.prefix = prefix

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


def encode_fields(**fields: Any) -> dict[Any, Any]:
    """Field updates for a job hash, JSON-encoded like :meth:`JobRecord.to_redis`."""
    return {k: json.dumps(v.value if isinstance(v, Enum) else v) for k, v in fields.items()}
