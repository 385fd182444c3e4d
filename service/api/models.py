"""Response models of the API (the analysis result itself is :class:`vad.schema.AnalysisResult`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from vad.jobstate import JobOptions, JobRecord, JobStatus


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer."""

    detail: str = Field(description="What was wrong and what to do, for people.")
    code: str = Field(description="A stable reason for programs: unauthorized, job_not_found, upload_too_large, "
                                  "unsupported_media, bad_upload, invalid_option, job_not_finished, "
                                  "store_unavailable, not_found, method_not_allowed, ...")


class JobLinks(BaseModel):
    self: str
    result: str


class Progress(BaseModel):
    stage: str = Field(description="queued, decoding, encoding, scoring, writing, done, failed, canceled.")
    percent: float = Field(ge=0, le=100)


class JobPublic(BaseModel):
    """What a client sees of a job."""

    id: str
    status: JobStatus
    queue_position: int | None = Field(None, description="0 = next; null when not queued.")
    progress: Progress
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int = Field(description="How many times a worker started this job.")
    error: str | None = Field(None, description="Readable failure reason when status is failed.")
    filename: str
    sha256: str
    size_bytes: int
    container: str
    options: JobOptions
    deduplicated: bool = Field(False, description="True when this answer returned an earlier job for the same "
                                                  "content and options instead of creating a new one.")
    links: JobLinks

    @classmethod
    def from_record(cls, record: JobRecord, base: str, position: int | None = None,
                    deduplicated: bool = False) -> JobPublic:
        return cls(
            id=record.id, status=record.status, queue_position=position,
            progress=Progress(stage=record.stage if not record.status.terminal else _final_stage(record.status),
                              percent=100.0 if record.status == JobStatus.finished else record.percent),
            created_at=record.created_at, started_at=record.started_at, finished_at=record.finished_at,
            attempts=record.attempts, error=record.error, filename=record.filename, sha256=record.sha256,
            size_bytes=record.size_bytes, container=record.container, options=record.options,
            deduplicated=deduplicated,
            links=JobLinks(self=f"{base}/v1/jobs/{record.id}", result=f"{base}/v1/jobs/{record.id}/result"),
        )


def _final_stage(status: JobStatus) -> str:
    return {JobStatus.finished: "done", JobStatus.failed: "failed", JobStatus.canceled: "canceled"}[status]


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    redis: bool
    workers: int
    storage_writable: bool


class NotReady(ErrorBody, Readiness):
    """``/readyz`` when not ready: the error body and the readiness fields."""
