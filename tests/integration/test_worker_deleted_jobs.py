"""A job deleted by its owner while a worker holds it: the worker never re-creates its record or result, reads a
partial record as gone, and says nothing of the server's paths in the reasons it records."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from vad.jobstate import JobRecord, JobStatus
from workers.exceptions import DecodeCancelled
from workers.queue.context import JobContext
from workers.queue.jobs import Progress, analyze_job, on_job_failure
from workers.settings import WorkerSettings

REDIS_URL = "redis://127.0.0.1:6379/0"
PARTIAL = {"stage": json.dumps("encoding"), "percent": json.dumps(40.0), "status": json.dumps("canceled")}


@pytest.fixture
def conn() -> Iterator[redis.Redis]:
    """The machine's Redis (``scripts/ensure-redis.sh`` starts one); the tests use their own key prefix."""
    connection = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        connection.ping()
    except redis.ConnectionError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    yield connection
    connection.close()


@pytest.fixture
def ctx(tmp_path: Path, conn: redis.Redis) -> Iterator[JobContext]:
    prefix = f"it-{secrets.token_hex(4)}:"
    context = JobContext(WorkerSettings(key_prefix=prefix, storage_dir=tmp_path), conn)
    import workers.queue.context as module

    previous, module._context = module._context, context
    yield context
    module._context = previous
    keys = list(conn.scan_iter(f"{prefix}*"))
    if keys:
        conn.delete(*keys)


def _record(ctx: JobContext, tmp_path: Path, **fields: Any) -> JobRecord:
    (tmp_path / "job1").mkdir(exist_ok=True)
    (tmp_path / "job1" / "video").write_bytes(b"x")
    record = JobRecord(id="job1", video_path=str(tmp_path / "job1" / "video"), **fields)
    ctx.redis.hset(ctx.keys.job("job1"), mapping=record.to_redis())
    return record


def _delete(ctx: JobContext) -> None:
    """What the API's DELETE does to our keys."""
    ctx.redis.delete(ctx.keys.job("job1"), ctx.keys.result("job1"))


class _Analyzer:
    """Stands in for the pipeline: reports progress, lets the test delete the job half-way, then ends."""

    def __init__(self, ctx: JobContext, end: str) -> None:
        self.ctx, self.end = ctx, end

    def analyze(self, path: Path, *, progress: Any, stop: threading.Event, **_: Any) -> Any:
        progress("decoding", 0.0)
        progress("encoding", 0.5)
        _delete(self.ctx)
        progress("scoring", 0.9)
        if self.end == "cancel" and stop.is_set():
            raise DecodeCancelled(path)
        progress("done", 1.0)
        return SimpleNamespace(model_dump_json=lambda **_: '{"result": 1}', timeline=SimpleNamespace(score=[0.1]),
                               events=[], timings=SimpleNamespace(model_dump=lambda: {"total_s": 1.0}))


def test_progress_after_a_delete_does_not_recreate_the_record(ctx: JobContext, tmp_path: Path) -> None:
    _record(ctx, tmp_path, status=JobStatus.started)
    progress = Progress(ctx, "job1", None, interval_s=60)
    progress("decoding", 0.1)
    _delete(ctx)
    progress("encoding", 0.5)
    assert progress.stop.is_set()
    assert not ctx.redis.exists(ctx.keys.job("job1"))


@pytest.mark.parametrize("end", ["cancel", "finish"])
def test_a_job_deleted_while_it_runs_leaves_no_record_and_no_result(ctx: JobContext, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch, end: str) -> None:
    _record(ctx, tmp_path, status=JobStatus.queued)
    monkeypatch.setattr(ctx, "analyzer", lambda name: _Analyzer(ctx, end))
    assert analyze_job("job1") == {"canceled": True}
    assert not ctx.redis.exists(ctx.keys.job("job1"), ctx.keys.result("job1"))


def test_a_job_deleted_before_it_started_is_skipped(ctx: JobContext) -> None:
    assert analyze_job("job1") == {"canceled": True}
    assert not ctx.redis.exists(ctx.keys.job("job1"))


def test_a_partial_record_is_read_as_gone(ctx: JobContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    ctx.redis.hset(ctx.keys.job("job1"), mapping=PARTIAL)
    monkeypatch.setattr(ctx, "analyzer", lambda name: pytest.fail("a gone job must not be analysed"))
    assert analyze_job("job1") == {"canceled": True}
    job = SimpleNamespace(id="job1", retries_left=0, timeout=60)
    on_job_failure(job, ctx.redis, RuntimeError, RuntimeError("boom"), None)  # no exception, nothing written
    assert {k.decode() for k in ctx.redis.hkeys(ctx.keys.job("job1"))} == set(PARTIAL)
    assert "job1" in caplog.text and "cannot be read" in caplog.text


def test_failure_reasons_name_the_upload_not_its_path(ctx: JobContext, tmp_path: Path) -> None:
    record = _record(ctx, tmp_path, status=JobStatus.started, attempts=1, filename="holiday.mp4")
    job = SimpleNamespace(id="job1", retries_left=0, timeout=60)
    missing = FileNotFoundError(2, "No such file or directory", record.video_path)
    on_job_failure(job, ctx.redis, FileNotFoundError, missing, None)
    error = JobRecord.from_redis(ctx.redis.hgetall(ctx.keys.job("job1"))).error or ""
    assert "holiday.mp4" in error and str(tmp_path) not in error and "/" not in error
