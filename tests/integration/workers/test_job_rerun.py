"""A job RQ hands out again after its outcome was recorded (its worker lost Redis between our record and RQ's)
is not analysed again: no second result, attempt, callback or deleted-upload failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.jobs import load_record, stored_record
from vad.jobstate import JobStatus
from workers.runtime.context import JobContext
from workers.runtime.jobs import analyze_job


@pytest.mark.parametrize("status", [JobStatus.finished, JobStatus.failed])
def test_a_job_whose_outcome_is_recorded_is_not_run_again(job_ctx: JobContext, tmp_path: Path,
                                                           status: JobStatus) -> None:
    # its upload is already gone, as after a job
    record = stored_record(job_ctx, tmp_path, upload=False, status=status, attempts=1, finished_at=1.0,
                           error="bad file" if status == JobStatus.failed else None)
    analyze_job("job1")
    after = load_record(job_ctx)
    assert (after.status, after.attempts, after.error) == (status, 1, record.error)
