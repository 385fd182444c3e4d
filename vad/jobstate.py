"""The job record shared by the API and the workers, and its fields (torch-free); its Redis keys are in
:mod:`vad.keys`."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

# Referenced by name (the API never imports the workers) through workers/jobs.py, a name every release has had:
# a job names its function by this path while it waits in the queue, so moving the implementation never strands it.
JOB_FUNCTION = "workers.jobs.analyze_job"
FAILURE_CALLBACK = "workers.jobs.on_job_failure"

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
    skip_unchanged: float = Field(0.0, ge=0.0, le=255.0, description=(
        "Reuse the last encoded snippet's CLIP features for a snippet whose frame moved no cell (1/64 of the width) "
        "by more than this many grey levels: fewer encoder passes on static footage; 0 (default): every snippet "
        "encoded, the official protocol."))

    def dedup_key(self) -> str:
        data = self.model_dump()
        if not data["skip_unchanged"]:  # the keys of jobs from before the option stay as they were
            del data["skip_unchanged"]
        return json.dumps(data, sort_keys=True)


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
    video_ref: str = Field("", description="Where the upload is stored: an absolute path in the local storage or "
                                           "s3://bucket/key (vad.storage); empty for a source not fetched yet.")
    video_path: str = Field("", description="The upload's path in records written before video_ref (read for one "
                                            "release, then removed).")
    source_url: str | None = Field(None, description="The URL a worker fetches the video from (https:// or s3://), "
                                                     "for a job created from a source instead of an upload.")
    options: JobOptions = Field(default_factory=JobOptions)
    callback_url: str | None = None
    dedup_key: str | None = None

    @property
    def upload_ref(self) -> str:
        """The stored upload's reference, from either field."""
        return self.video_ref or self.video_path

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


def dedup_digest(sha256: str, options: JobOptions) -> str:
    """The part of a dedup key that stands for (content, options)."""
    return hashlib.sha256(f"{sha256}|{options.dedup_key()}".encode()).hexdigest()[:32]
