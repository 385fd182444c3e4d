"""A job RQ hands out again after its outcome was recorded (its worker lost Redis between our record and RQ's)
is not analysed again: no second result, attempt, callback or deleted-upload failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from vad.jobstate import JobRecord, JobStatus
from workers.queue.context import JobContext
from workers.queue.jobs import analyze_job


@pytest.mark.parametrize("status", [JobStatus.finished, JobStatus.failed])
def test_a_job_whose_outcome_is_recorded_is_not_run_again(job_ctx: JobContext, tmp_path: Path,
                                                           status: JobStatus) -> None:
    record = JobRecord(id="job1", video_path=str(tmp_path / "job1" / "video"), status=status, attempts=1,
                       finished_at=1.0, error="bad file" if status == JobStatus.failed else None)
    # its upload is already gone, as after a job
    job_ctx.redis.hset(job_ctx.keys.job("job1"), mapping=record.to_redis())
    analyze_job("job1")
    after = JobRecord.from_redis(job_ctx.redis.hgetall(job_ctx.keys.job("job1")))
    assert (after.status, after.attempts, after.error) == (status, 1, record.error)
