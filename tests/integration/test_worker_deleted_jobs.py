"""A job deleted by its owner while a worker holds it: the worker never re-creates its record or result, reads a
partial record as gone, and says nothing of the server's paths in the reasons it records."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.support.jobs import load_record, stored_record
from vad.jobstate import JobStatus
from vad.storage.features import FeatureStore
from workers.exceptions import DecodeCancelled
from workers.runtime.context import JobContext
from workers.runtime.jobs import Progress, analyze_job, on_job_failure

REDIS_URL = "redis://127.0.0.1:6379/0"
PARTIAL = {"stage": json.dumps("encoding"), "percent": json.dumps(40.0), "status": json.dumps("canceled")}


def _delete(job_ctx: JobContext) -> None:
    """What the API's DELETE does to our keys."""
    job_ctx.redis.delete(job_ctx.keys.job("job1"), job_ctx.keys.result("job1"))


class _Analyzer:
    """Stands in for the pipeline: reports progress, lets the test delete the job half-way, then ends."""

    def __init__(self, job_ctx: JobContext, end: str) -> None:
        self.job_ctx, self.end = job_ctx, end

    def analyze(self, path: Path, *, progress: Any, stop: threading.Event, on_features: Any = None,
                **_: Any) -> Any:
        progress("decoding", 0.0)
        if on_features is not None:
            on_features(np.zeros((1, 4), np.float32))
        progress("encoding", 0.5)
        _delete(self.job_ctx)
        progress("scoring", 0.9)
        if self.end == "cancel" and stop.is_set():
            raise DecodeCancelled(path)
        progress("done", 1.0)
        return SimpleNamespace(model_dump_json=lambda **_: '{"result": 1}', timeline=SimpleNamespace(score=[0.1]),
                               events=[], timings=SimpleNamespace(model_dump=lambda: {"total_s": 1.0}))


def test_progress_after_a_delete_does_not_recreate_the_record(job_ctx: JobContext, tmp_path: Path) -> None:
    stored_record(job_ctx, tmp_path, status=JobStatus.started)
    progress = Progress(job_ctx, "job1", None, interval_s=60)
    progress("decoding", 0.1)
    _delete(job_ctx)
    progress("encoding", 0.5)
    assert progress.stop.is_set()
    assert not job_ctx.redis.exists(job_ctx.keys.job("job1"))


@pytest.mark.parametrize("end", ["cancel", "finish"])
def test_a_job_deleted_while_it_runs_leaves_no_record_and_no_result(job_ctx: JobContext, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch, end: str) -> None:
    stored_record(job_ctx, tmp_path, status=JobStatus.queued)
    monkeypatch.setattr(job_ctx, "analyzer", lambda name: _Analyzer(job_ctx, end))
    assert analyze_job("job1") == {"canceled": True}
    assert not job_ctx.redis.exists(job_ctx.keys.job("job1"), job_ctx.keys.result("job1"))
    assert FeatureStore(job_ctx.storage).get("job1") is None  # its features were saved, then dropped
    assert not list(job_ctx.redis.scan_iter(f"{job_ctx.keys.prefix}event*"))


def test_a_job_deleted_before_it_started_is_skipped(job_ctx: JobContext) -> None:
    assert analyze_job("job1") == {"canceled": True}
    assert not job_ctx.redis.exists(job_ctx.keys.job("job1"))


def test_a_partial_record_is_read_as_gone(job_ctx: JobContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    job_ctx.redis.hset(job_ctx.keys.job("job1"), mapping=PARTIAL)
    monkeypatch.setattr(job_ctx, "analyzer", lambda name: pytest.fail("a gone job must not be analysed"))
    assert analyze_job("job1") == {"canceled": True}
    job = SimpleNamespace(id="job1", retries_left=0, timeout=60)
    on_job_failure(job, job_ctx.redis, RuntimeError, RuntimeError("boom"), None)  # no exception, nothing written
    assert {k.decode() for k in job_ctx.redis.hkeys(job_ctx.keys.job("job1"))} == set(PARTIAL)
    assert "job1" in caplog.text and "cannot be read" in caplog.text


def test_failure_reasons_name_the_upload_not_its_path(job_ctx: JobContext, tmp_path: Path) -> None:
    record = stored_record(job_ctx, tmp_path, status=JobStatus.started, attempts=1, filename="holiday.mp4")
    job = SimpleNamespace(id="job1", retries_left=0, timeout=60)
    missing = FileNotFoundError(2, "No such file or directory", record.video_path)
    on_job_failure(job, job_ctx.redis, FileNotFoundError, missing, None)
    error = load_record(job_ctx).error or ""
    assert "holiday.mp4" in error and str(tmp_path) not in error and "/" not in error
