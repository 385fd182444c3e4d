"""Job status, result and deletion."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from service.api.deps import BaseUrlDep, OwnerDep, StoreDep
from service.api.errors import error_responses
from service.api.models import JobPublic
from service.exceptions import JobNotFinished
from vad.jobstate import JobStatus
from vad.schema import AnalysisResult

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

NO_JOB = (404, "No such job (or it belongs to another API key, or its record expired)")


@router.get("/{job_id}", response_model=JobPublic, responses=error_responses(401, NO_JOB, 503))
def get_job(job_id: str, store: StoreDep, owner: OwnerDep, base: BaseUrlDep) -> JobPublic:
    """Status, queue position, progress, timestamps and, for a failed job, the reason."""
    record = store.get(job_id, owner)
    position = store.queue_position(job_id) if record.status == JobStatus.queued else None
    return JobPublic.from_record(record, base, position)


@router.get("/{job_id}/result", response_model=AnalysisResult, responses=error_responses(
    401, NO_JOB, (409, "The job has not finished: it is queued, running, failed (`detail` says why) or canceled"), 503))
def get_result(job_id: str, store: StoreDep, owner: OwnerDep) -> Response:
    """The analysis result (409 while the job is not finished)."""
    record = store.get(job_id, owner)
    payload = store.result_json(job_id) if record.status == JobStatus.finished else None
    if payload is None:
        detail = record.error if record.status == JobStatus.failed else None
        raise JobNotFinished(f"job {job_id} is {record.status.value}" + (f": {detail}" if detail else ""))
    return Response(content=payload, media_type="application/json")


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401, NO_JOB, 503))
def delete_job(job_id: str, store: StoreDep, owner: OwnerDep) -> Response:
    """Cancel the job if it has not ended, and delete its upload, record, result and its events' evidence."""
    store.delete(store.get(job_id, owner))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
