"""A job RQ hands out again after its outcome was recorded (its worker lost Redis between our record and RQ's)
is not analysed again: no second result, attempt, callback or deleted-upload failure."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from vad.jobstate import JobRecord, JobStatus
from workers.queue.context import JobContext
from workers.queue.jobs import analyze_job
from workers.settings import WorkerSettings


@pytest.fixture
def ctx(tmp_path: Path, live_redis: redis.Redis) -> Iterator[JobContext]:
    prefix = f"unit-{secrets.token_hex(4)}:"
    context = JobContext(WorkerSettings(key_prefix=prefix, storage_dir=tmp_path), live_redis)
    import workers.queue.context as module

    previous, module._context = module._context, context
    yield context
    module._context = previous
    keys = list(live_redis.scan_iter(f"{prefix}*"))
    if keys:
        live_redis.delete(*keys)


@pytest.mark.parametrize("status", [JobStatus.finished, JobStatus.failed])
def test_a_job_whose_outcome_is_recorded_is_not_run_again(ctx: JobContext, tmp_path: Path, status: JobStatus) -> None:
    record = JobRecord(id="job1", video_path=str(tmp_path / "job1" / "video"), status=status, attempts=1,
                       finished_at=1.0, error="bad file" if status == JobStatus.failed else None)
    ctx.redis.hset(ctx.keys.job("job1"), mapping=record.to_redis())  # its upload is already gone, as after a job
    analyze_job("job1")
    after = JobRecord.from_redis(ctx.redis.hgetall(ctx.keys.job("job1")))
    assert (after.status, after.attempts, after.error) == (status, 1, record.error)
