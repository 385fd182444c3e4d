"""``POST /v1/videos``: upload a video, or name one by URL, and start its analysis."""

from __future__ import annotations

import re
import secrets
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from service.api.deps import BaseUrlDep, OwnerDep, SettingsDep, StoreDep
from service.api.errors import error_responses
from service.api.models import JobPublic, VideoSource
from service.exceptions import BadUpload, InvalidOption, UploadTooLarge
from service.store import JobStore
from service.upload import MAX_FIELD_BYTES, _paced, check_request, discard, display_name, receive_upload
from vad.exceptions import CallbackRefused, SourceRefused
from vad.jobstate import JobOptions, JobRecord
from vad.net.rules import check_callback_url, check_source, source_name
from vad.settings import QueueSettings

router = APIRouter(prefix="/v1", tags=["videos"])

_OPTIONS = JobOptions.model_json_schema()["properties"]
_FORM_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "minLength": 1,
                 "description": "The video; its first bytes must be a recognised container: mp4/mov, mkv/webm, avi, "
                                "mpeg-ts/ps, flv, ogg or asf (415 otherwise, whatever the name or type). At most "
                                "VAD_MAX_UPLOAD_MB (413 above)."},
        "model": {"type": "string", "description": "A model the workers serve; empty or omitted: their default. Once "
                                                   "workers announced theirs, the others are 422 (and this lists "
                                                   "them)."},
        "threshold": {k: v for k, v in _OPTIONS["threshold"].items() if k != "title"},
        "frame_scores": {k: v for k, v in _OPTIONS["frame_scores"].items() if k != "title"},
        "skip_unchanged": {k: v for k, v in _OPTIONS["skip_unchanged"].items() if k != "title"},
        "callback_url": {"type": "string", "description": "POSTed the job when it ends (allow-listed)."},
    },
}
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": _FORM_SCHEMA},
            "application/json": {"schema": {k: v for k, v in VideoSource.model_json_schema().items()
                                            if k != "title"}},
        },
    }
}
JSON_BODY = "application/json"
_UPLOAD_ERRORS = (
    (400, "Malformed upload (multipart body, Content-Length, empty file, no or two `file` parts, an oversized form "
          "field, an empty JSON body), or the client disconnected mid-upload"),
    401,
    (408, "The client stopped sending in the middle of the upload (VAD_UPLOAD_IDLE_TIMEOUT_S)"),
    (413, "The upload or the JSON body exceeds the size limit (VAD_MAX_UPLOAD_MB)"),
    (415, "Neither multipart/form-data nor JSON, or the file is not a recognised video container"),
    (422, "A refused option (threshold, frame_scores, skip_unchanged, model, callback_url) or `source` (not on the "
          "allow-lists), or a JSON body that does not match"),
    (503, "Redis or the upload storage is unavailable; retry after `Retry-After` seconds"),
)


_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def _options(fields: dict[str, str]) -> JobOptions:
    """The job options from the form, read as the request body schema says: an empty ``model`` is the default,
    ``threshold`` and ``skip_unchanged`` numbers, ``frame_scores`` exactly ``true`` or ``false``."""
    data: dict[str, Any] = {k: v for k, v in fields.items() if k in JobOptions.model_fields}
    if data.get("model") == "":
        del data["model"]
    for name, example in (("threshold", "0.5"), ("skip_unchanged", "8")):
        number = data.get(name)
        if number is not None and not _JSON_NUMBER.fullmatch(number):
            raise InvalidOption(f"{name}: send a number such as {example}, not {number[:40]!r}")
    flag = data.get("frame_scores")
    if flag is not None:
        if flag not in ("true", "false"):
            raise InvalidOption(f"frame_scores: send true or false, not {flag[:40]!r}")
        data["frame_scores"] = flag == "true"
    try:
        return JobOptions.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidOption(problems) from exc


def _check_options(options: JobOptions, callback: str | None, settings: QueueSettings, store: JobStore) -> None:
    known = store.model_names()
    if options.model is not None and known and options.model not in known:
        raise InvalidOption(f"unknown model {options.model!r}; the workers serve {', '.join(known)}")
    if callback:
        try:
            check_callback_url(callback, settings.callback_allowlist, settings.callback_allow_private)
        except CallbackRefused as exc:
            raise InvalidOption(str(exc)) from exc


@router.post("/videos", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic, openapi_extra=_UPLOAD_BODY,
             responses={200: {"model": JobPublic, "description": "Same content and options as an earlier job"},
                        202: {"headers": {"Location": {"description": "The job's URL.",
                                                       "schema": {"type": "string"}}}},
                        **error_responses(*_UPLOAD_ERRORS)})
async def upload_video(request: Request, settings: SettingsDep, store: StoreDep, owner: OwnerDep,
                       base: BaseUrlDep) -> JSONResponse:
    """Upload a video (multipart field ``file``): 202 with the job, or 200 with an earlier identical job. Or name
    one by URL (JSON ``{"source": ...}``): 202 with a job whose worker fetches it."""
    if (request.headers.get("content-type") or "").split(";")[0].strip().lower() == JSON_BODY:
        return await _from_source(request, settings, store, owner, base)
    boundary = check_request(request.headers.get("content-type"), request.headers.get("content-length"),
                             settings.max_upload_bytes)
    job_id = secrets.token_urlsafe(18)
    writer = store.storage.writer(job_id)
    try:
        stored, fields = await receive_upload(request.stream(), boundary, writer, settings.max_upload_bytes,
                                              idle_timeout_s=settings.upload_idle_timeout_s)
        options = _options(fields)
        callback = fields.get("callback_url") or None
        _check_options(options, callback, settings, store)
        duplicate = store.find_duplicate(owner, stored.sha256, options)
        if duplicate is not None:
            await discard(writer)
            body = JobPublic.from_record(duplicate, base, store.queue_position(duplicate.id), deduplicated=True)
            return JSONResponse(body.model_dump(mode="json"), status_code=status.HTTP_200_OK)
        record = store.create(JobRecord(
            id=job_id, owner=owner, filename=stored.filename, sha256=stored.sha256, size_bytes=stored.size,
            container=stored.container, video_ref=stored.ref, options=options, callback_url=callback))
    except BaseException:
        await discard(writer)
        raise
    return _accepted(record, base, store)


def _accepted(record: JobRecord, base: str, store: JobStore) -> JSONResponse:
    body = JobPublic.from_record(record, base, store.queue_position(record.id))
    return JSONResponse(body.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED,
                        headers={"Location": body.links.self})


async def _json_body(request: Request, idle_timeout_s: float) -> bytes:
    """The request body, at most :data:`MAX_FIELD_BYTES`, cut off like an upload when the client stalls."""
    data = bytearray()
    async for chunk in _paced(request.stream(), idle_timeout_s):
        data.extend(chunk)
        if len(data) > MAX_FIELD_BYTES:
            raise UploadTooLarge(f"a JSON body is at most {MAX_FIELD_BYTES} bytes")
    return bytes(data)


async def _from_source(request: Request, settings: SettingsDep, store: JobStore, owner: str,
                       base: str) -> JSONResponse:
    """A job whose worker fetches the video from ``source``; dedup by content happens once it is fetched."""
    raw = await _json_body(request, settings.upload_idle_timeout_s)
    if not raw:
        raise BadUpload('send a JSON object such as {"source": "https://..."}')
    try:
        body = VideoSource.model_validate_json(raw)
        options = JobOptions(model=body.model or None, threshold=body.threshold, frame_scores=body.frame_scores,
                             skip_unchanged=body.skip_unchanged)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidOption(problems) from exc
    try:
        source = check_source(body.source, settings)
    except SourceRefused as exc:
        raise InvalidOption(str(exc)) from exc
    callback = body.callback_url or None
    _check_options(options, callback, settings, store)
    record = store.create(JobRecord(id=secrets.token_urlsafe(18), owner=owner,
                                    filename=display_name(source_name(source)), source_url=source, options=options,
                                    callback_url=callback))
    return _accepted(record, base, store)
