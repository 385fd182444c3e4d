"""``POST /v1/videos``: upload a video and start its analysis."""

from __future__ import annotations

import secrets
import shutil
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from service.api.deps import BaseUrlDep, OwnerDep, SettingsDep, StoreDep
from service.api.models import JobPublic
from service.exceptions import InvalidOption
from service.upload import check_request, receive_upload
from vad.callbacks import check_callback_url
from vad.exceptions import CallbackRefused
from vad.jobstate import JobOptions, JobRecord

router = APIRouter(prefix="/v1", tags=["videos"])

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary", "description": "The video (any common container)."},
                "model": {"type": "string", "description": "Model name; the workers' default when omitted."},
                "threshold": {"type": "number", "default": 0.5, "description": "Event threshold on the score."},
                "frame_scores": {"type": "boolean", "default": False, "description": "Return per-frame scores."},
                "callback_url": {"type": "string", "description": "POSTed the job when it ends (allow-listed)."},
            },
        }}},
    }
}


def _options(fields: dict[str, str]) -> JobOptions:
    data: dict[str, Any] = {k: v for k, v in fields.items() if k in JobOptions.model_fields and v != ""}
    try:
        return JobOptions.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidOption(problems) from exc


@router.post("/videos", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic, openapi_extra=_UPLOAD_BODY,
             responses={200: {"model": JobPublic, "description": "Same content and options as an earlier job"},
                        413: {"description": "Too large"}, 415: {"description": "Not a video container"}})
async def upload_video(request: Request, settings: SettingsDep, store: StoreDep, owner: OwnerDep,
                       base: BaseUrlDep) -> JSONResponse:
    """Upload a video (multipart field ``file``); answers 202 with the job, or 200 with an earlier identical job."""
    boundary = check_request(request.headers.get("content-type"), request.headers.get("content-length"),
                             settings.max_upload_bytes)
    job_id = secrets.token_urlsafe(18)
    directory = store.upload_dir(job_id)
    try:
        stored, fields = await receive_upload(request.stream(), boundary, directory, settings.max_upload_bytes,
                                              idle_timeout_s=settings.upload_idle_timeout_s)
        options = _options(fields)
        known = store.model_names()
        if options.model is not None and known and options.model not in known:
            raise InvalidOption(f"unknown model {options.model!r}; the workers serve {', '.join(known)}")
        callback = fields.get("callback_url") or None
        if callback:
            try:
                check_callback_url(callback, settings.callback_allowlist, settings.callback_allow_private)
            except CallbackRefused as exc:
                raise InvalidOption(str(exc)) from exc
        duplicate = store.find_duplicate(owner, stored.sha256, options)
        if duplicate is not None:
            shutil.rmtree(directory, ignore_errors=True)
            body = JobPublic.from_record(duplicate, base, store.queue_position(duplicate.id), deduplicated=True)
            return JSONResponse(body.model_dump(mode="json"), status_code=status.HTTP_200_OK)
        record = store.create(JobRecord(
            id=job_id, owner=owner, filename=stored.filename, sha256=stored.sha256, size_bytes=stored.size,
            container=stored.container, video_path=str(stored.path.resolve()), options=options,
            callback_url=callback))
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    body = JobPublic.from_record(record, base, store.queue_position(record.id))
    return JSONResponse(body.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED,
                        headers={"Location": body.links.self})
