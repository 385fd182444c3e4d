"""RQ job functions: module-level, JSON arguments (job ids only), progress in job meta and our record.

``analyze_job`` is what the API enqueues (by name, :data:`vad.jobstate.JOB_FUNCTION`);
``on_job_failure`` is its failure callback, which RQ also runs for jobs of dead workers.
Permanent failures (a file that is not a decodable video, an unknown model) fail at once;
anything else is retried by RQ up to the job's ``Retry`` budget. Every write to the job's record goes through
:func:`~workers.runtime.records.update_record`, which never re-creates a record its owner deleted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rq import get_current_job
from rq.job import Job

from vad.exceptions import StorageError
from vad.jobstate import JobRecord, JobStatus, dedup_digest
from vad.net.redact import scrub_paths
from vad.schema import AnalysisResult
from workers.exceptions import DecodeCancelled, WorkerError
from workers.runtime.context import JobContext, get_context
from workers.runtime.fetch import fetch_source
from workers.runtime.history import drop_job_features, index_job_events, save_job_features, with_fresh_event_ids
from workers.runtime.notify import send_callback
from workers.runtime.records import read_record, update_record

log = logging.getLogger(__name__)

PERMANENT_ERRORS: tuple[type[BaseException], ...] = (WorkerError, ValueError)  # retrying cannot help


class Progress:
    """``progress(stage, fraction)`` for the analyzer: throttled writes, and cancellation checks."""

    def __init__(self, ctx: JobContext, job_id: str, rq_job: Job | None, interval_s: float = 0.5) -> None:
        self.ctx, self.job_id, self.rq_job, self.interval = ctx, job_id, rq_job, interval_s
        self.stop = threading.Event()
        self._last, self._stage = 0.0, ""
        self.stage_started: dict[str, float] = {}

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        if stage != self._stage:
            self.stage_started.setdefault(stage, now)
        elif now - self._last < self.interval and fraction < 1.0:
            return
        self._stage, self._last = stage, now
        percent = round(100.0 * max(0.0, min(1.0, fraction)), 1)
        status = update_record(self.ctx, self.job_id, stage=stage, percent=percent)
        if status is None or status == JobStatus.canceled:
            self.stop.set()  # deleted or canceled by its owner: the analyzer stops at its next check
            return
        if self.rq_job is not None:
            self.rq_job.meta.update(stage=stage, percent=percent)
            self.rq_job.save_meta()


def analyze_job(job_id: str) -> dict[str, Any]:
    """Analyse the video of job ``job_id`` (its upload, or its source URL) and store the result under our own key."""
    ctx = get_context()
    record = read_record(ctx, job_id)
    if record is None or record.status == JobStatus.canceled:
        return {"canceled": True}  # deleted before a worker took it
    if record.status.terminal:  # its end is recorded; RQ hands it out again when a worker lost Redis before RQ's
        return {"already": record.status.value}
    rq_job = get_current_job()
    stage = "fetching" if record.source_url or record.upload_ref.startswith("s3://") else "decoding"
    if update_record(ctx, job_id, status=JobStatus.started, started_at=time.time(), stage=stage, percent=0.0,
                     attempts=record.attempts + 1, error=None) is None:
        return {"canceled": True}
    progress = Progress(ctx, job_id, rq_job)
    result: AnalysisResult | None = None
    kept: list[Any] = []  # the snippet features, saved for verdicts on the job's events
    try:
        with job_video(ctx, record) as (path, record):
            reused = reuse_result(ctx, record) if record.source_url else None
            if reused is None:
                result = ctx.analyzer(record.options.model).analyze(
                    path, filename=record.filename, sha256=record.sha256, progress=progress, stop=progress.stop,
                    on_features=kept.append, threshold=record.options.threshold,
                    frame_scores=record.options.frame_scores, skip_unchanged=record.options.skip_unchanged)
                if ctx.settings.evidence and result.events:
                    progress("evidence", 0.0)
                    _save_evidence(ctx, record, path, result)
            else:
                reused = with_fresh_event_ids(reused)
    except DecodeCancelled:
        update_record(ctx, job_id, status=JobStatus.canceled, finished_at=time.time())
        return {"canceled": True}
    except PERMANENT_ERRORS as exc:
        if rq_job is not None:
            rq_job.retries_left = 0  # a bad file stays bad: no retry
        raise _readable(exc) from exc
    result_json = str(result.model_dump_json(by_alias=True) if result is not None else reused)
    saved = save_job_features(ctx, job_id, kept[0] if kept else None)
    finished_at = time.time()
    if update_record(ctx, job_id, result_json=result_json, status=JobStatus.finished, finished_at=finished_at,
                     stage="done", percent=100.0) is None:
        if saved:
            drop_job_features(ctx, job_id)
        return {"canceled": True}  # deleted while it ran: its result goes with it
    index_job_events(ctx, record, result_json, finished_at)
    _record_stats(ctx, "finished", progress.stage_started, result.timings.model_dump() if result is not None else {})
    _finish(ctx, read_record(ctx, job_id))
    if result is None:
        return {"reused": True}
    return {"snippets": len(result.timeline.score), "events": len(result.events)}


@contextmanager
def job_video(ctx: JobContext, record: JobRecord) -> Iterator[tuple[Path, JobRecord]]:
    """The job's video as a local file while the context lasts, and its record: for a source, completed with what
    the fetch found (size, SHA-256, container), as an upload of the same bytes would have recorded."""
    if not record.source_url:
        with ctx.storage.fetch(record.upload_ref, ctx.settings.max_upload_bytes, record.sha256) as path:
            yield path, record
        return
    with fetch_source(record.source_url, ctx.settings, ctx.scratch) as fetched:
        found: dict[str, Any] = {"sha256": fetched.sha256, "size_bytes": fetched.size, "container": fetched.container}
        if update_record(ctx, record.id, **found) is None:
            raise DecodeCancelled(fetched.path, name=record.filename)  # deleted while its source was fetched
        yield fetched.path, record.model_copy(update=found)


def _save_evidence(ctx: JobContext, record: JobRecord, path: Path, result: AnalysisResult) -> None:
    """Snapshots and clips of the job's events, from its video while it is still here (issue 19)."""
    from workers.evidence.jobs import save_job_evidence
    from workers.evidence.store import EvidenceSource, EvidenceStore

    store = EvidenceStore(ctx.storage, ctx.redis, ctx.keys, EvidenceSource("job", record.id, record.owner),
                          ctx.settings.evidence_thumbnail_width, ctx.settings.evidence_retention_s)
    save_job_evidence(store, path, result, ctx.settings)


def reuse_result(ctx: JobContext, record: JobRecord) -> str | None:
    """For a job from a source, once its content is known: the result of an earlier finished job of the same owner
    for the same content and options (what an upload of the same bytes would have been answered), or ``None``
    after claiming the dedup entry for this job, so that later uploads of these bytes are answered with it."""
    key = ctx.keys.dedup(record.owner, dedup_digest(record.sha256, record.options))
    ttl = ctx.settings.result_ttl_s
    earlier = ctx.redis.get(key)
    earlier_id = earlier.decode() if isinstance(earlier, bytes) else earlier
    if earlier_id and earlier_id != record.id:
        other = read_record(ctx, earlier_id)
        if other is not None and other.status == JobStatus.finished:
            result = ctx.redis.get(ctx.keys.result(earlier_id))
            if result is not None:
                return result.decode() if isinstance(result, bytes) else str(result)
        if other is not None and not other.status.terminal:
            return None  # being analysed: this job is analysed too rather than waiting on it
    ctx.redis.set(key, record.id, ex=ttl)
    update_record(ctx, record.id, dedup_key=key)
    return None


def on_job_failure(job: Job, connection: Any, exc_type: type | None, exc: BaseException | None, _tb: Any) -> None:
    """RQ failure callback (also for abandoned jobs of dead workers): keep our record truthful."""
    ctx = get_context()
    record = read_record(ctx, job.id)
    if record is None or record.status.terminal:
        return  # deleted by its owner (the worker removes what RQ keeps of it), or already ended
    reason = failure_reason(exc_type, exc, job, record)
    if job.retries_left:  # RQ requeues it after this callback
        update_record(ctx, job.id, status=JobStatus.queued, stage="queued", percent=0.0,
                      error=f"attempt {record.attempts} failed ({reason}); retrying")
        return
    if update_record(ctx, job.id, status=JobStatus.failed, finished_at=time.time(), error=reason) is None:
        return
    _record_stats(ctx, "failed", {}, {})
    _finish(ctx, read_record(ctx, job.id))


def failure_reason(exc_type: type | None, exc: BaseException | None, job: Job, record: JobRecord | None = None) -> str:
    """A sentence a user can act on, from the exception RQ saw; the upload named by its file name, no server path."""
    name = exc_type.__name__ if exc_type is not None else "Error"
    if name == "AbandonedJobError":
        return "the worker processing this job stopped unexpectedly (killed or crashed)"
    if name == "JobTimeoutException":
        return f"the analysis took longer than the job timeout of {job.timeout} s"
    text = str(exc) if exc is not None else ""
    reason = text if isinstance(exc, (WorkerError, ValueError)) and text else f"{name}: {text}".rstrip(": ")
    return scrub_paths(reason, {record.upload_ref: record.filename} if record is not None else None)


def _readable(exc: BaseException) -> WorkerError:
    return exc if isinstance(exc, WorkerError) else WorkerError(str(exc))


def _record_stats(ctx: JobContext, outcome: str, stage_started: dict[str, float], timings: dict[str, float]) -> None:
    with ctx.redis.pipeline() as pipe:
        pipe.hincrbyfloat(ctx.keys.stats, f"jobs_{outcome}", 1)
        for stage, seconds in timings.items():
            name = stage.removesuffix("_s")
            pipe.hincrbyfloat(ctx.keys.stats, f"stage_seconds:{name}", float(seconds))
            pipe.hincrbyfloat(ctx.keys.stats, f"stage_runs:{name}", 1)
        pipe.execute()


def _finish(ctx: JobContext, record: JobRecord | None) -> None:
    """After a job ended: remove its upload (per the retention setting) and send its callback."""
    if record is None:
        return  # deleted in the meantime: the delete took the upload
    if ctx.settings.upload_retention_s == 0 and record.upload_ref:
        try:
            ctx.storage.delete(record.id)
        except StorageError as exc:  # the supervisor's sweep deletes it later
            log.warning("the upload of job %s stays until the sweep removes it: %s", record.id, exc)
    if record.callback_url:
        send_callback(record, ctx.settings)
