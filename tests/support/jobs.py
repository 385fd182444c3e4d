"""Job records as the API stores them, for the tests of the RQ job functions (:mod:`workers.runtime.jobs`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vad.jobstate import JobRecord
from workers.runtime.context import JobContext

JOB_ID = "job1"


def stored_record(job_ctx: JobContext, folder: Path, *, upload: bool = True, **fields: Any) -> JobRecord:
    """The record of job ``job1`` written to the context's Redis; its upload is ``folder/job1/video`` (one byte,
    written unless ``upload`` is false: an upload already removed)."""
    video = folder / JOB_ID / "video"
    if upload:
        video.parent.mkdir(parents=True, exist_ok=True)
        video.write_bytes(b"x")
    record = JobRecord(id=JOB_ID, video_path=str(video), **fields)
    job_ctx.redis.hset(job_ctx.keys.job(JOB_ID), mapping=record.to_redis())
    return record


def load_record(job_ctx: JobContext) -> JobRecord:
    """The record of job ``job1`` as it is in Redis now."""
    return JobRecord.from_redis(job_ctx.redis.hgetall(job_ctx.keys.job(JOB_ID)))
