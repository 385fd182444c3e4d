"""Job functions against a live Redis: progress and cancellation, the failure callback, models sharing an encoder."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.jobs import load_record, stored_record
from vad.jobstate import JobStatus
from workers.exceptions import ConfigurationError
from workers.runtime.context import JobContext
from workers.runtime.jobs import Progress, on_job_failure
from workers.settings import WorkerSettings


def test_progress_is_throttled_and_sees_cancellation(job_ctx: JobContext, tmp_path: Path) -> None:
    stored_record(job_ctx, tmp_path, status=JobStatus.started)
    progress = Progress(job_ctx, "job1", None, interval_s=60)
    progress("decoding", 0.1)
    assert (load_record(job_ctx).stage, load_record(job_ctx).percent) == ("decoding", 10.0)
    progress("decoding", 0.5)  # within the interval: not written
    assert load_record(job_ctx).percent == 10.0
    progress("encoding", 0.6)  # a new stage is always written
    assert (load_record(job_ctx).stage, load_record(job_ctx).percent) == ("encoding", 60.0)
    assert not progress.stop.is_set()
    job_ctx.redis.hset(job_ctx.keys.job("job1"), "status", json.dumps("canceled"))
    progress("scoring", 0.9)
    assert progress.stop.is_set()


def test_failure_callback_requeues_then_fails_and_cleans_up(job_ctx: JobContext, tmp_path: Path) -> None:
    stored_record(job_ctx, tmp_path, status=JobStatus.started, attempts=1)
    job = SimpleNamespace(id="job1", retries_left=1, timeout=60)
    on_job_failure(job, job_ctx.redis, RuntimeError, RuntimeError("transient"), None)
    record = load_record(job_ctx)
    assert record.status == JobStatus.queued and "retrying" in (record.error or "")
    assert (tmp_path / "job1" / "video").exists()  # kept for the retry
    job.retries_left = 0
    on_job_failure(job, job_ctx.redis, RuntimeError, RuntimeError("again"), None)
    record = load_record(job_ctx)
    assert record.status == JobStatus.failed and record.error == "RuntimeError: again" and record.finished_at
    assert not (tmp_path / "job1").exists()  # retention 0: the upload is deleted
    assert float(job_ctx.redis.hget(job_ctx.keys.stats, "jobs_failed")) == 1.0


def test_models_with_the_same_clip_share_one_encoder(job_ctx: JobContext, tmp_path: Path) -> None:
    from model.bundle import save_bundle
    from tests.conftest import tiny_bundle

    save_bundle(tiny_bundle("ucf", seed=0), tmp_path / "ucf.safetensors")  # same seed: the same tiny CLIP
    save_bundle(tiny_bundle("xd", seed=0), tmp_path / "xd.safetensors")
    job_ctx.settings = WorkerSettings(key_prefix=job_ctx.keys.prefix, bundle=tmp_path / "ucf.safetensors", device="cpu",
                                  models={"xd": tmp_path / "xd.safetensors"})
    job_ctx.load_models()
    assert job_ctx.analyzer(None).model.preset == "ucf" and job_ctx.analyzer("xd").model.preset == "xd"
    assert job_ctx.analyzer(None).encoder is job_ctx.analyzer("xd").encoder
    announced = {k.decode(): json.loads(v) for k, v in job_ctx.redis.hgetall(job_ctx.keys.models).items()}
    assert set(announced) == {"default", "xd"} and announced["xd"]["classes"][1] == "fighting"
    with pytest.raises(ConfigurationError, match="unknown model 'nope'"):
        job_ctx.analyzer("nope")
