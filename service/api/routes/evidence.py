"""An event's evidence: its snapshot, thumbnail and clip, streamed from the storage with HTTP range requests."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Response
from fastapi.responses import StreamingResponse

from service.api.deps import OwnerDep, StoreDep
from service.api.errors import RETRY_AFTER, error_response
from service.api.models import ErrorBody
from service.exceptions import EvidenceNotFound, StoreUnavailable
from vad.evidence import FILES, evidence_key
from vad.exceptions import StorageError, StorageUnavailable
from vad.storage.base import Storage
from vad.storage.evidence import read_meta

router = APIRouter(prefix="/v1/events", tags=["evidence"])

EVENT_ID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_DESCRIPTIONS = {
    401: "Missing or unknown `X-API-Key` (only when the deployment configures API keys)",
    404: "No evidence for this event: none was kept (evidence off, or not written yet: a live clip is written once "
         "its post-roll has passed), its retention ended, its job or stream was deleted, or it belongs to another "
         "API key",
    416: "The range starts beyond the end of the file (`Content-Range: bytes */<size>` gives its size)",
    422: "The event id is not a UUID",
    503: "The storage or the job store is unavailable; retry after `Retry-After` seconds",
}

EventId = Annotated[str, Path(pattern=EVENT_ID_PATTERN, description="The event's id (a UUID).")]
RangeHeader = Annotated[str | None, Header(description="`bytes=START-END`, `bytes=START-` or `bytes=-LENGTH`: "
                                                       "206 with that part (a browser seeking in the clip).")]


def evidence_responses(media_type: str) -> dict[int | str, dict[str, Any]]:
    found: dict[int | str, dict[str, Any]] = {
        200: {"content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
              "description": "The whole file (`Accept-Ranges: bytes`)."},
        206: {"content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
              "description": "The part the `Range` header asked for (`Content-Range` says which)."}}
    for code, text in _DESCRIPTIONS.items():
        found[code] = {"model": ErrorBody, "description": text}
    found[503]["headers"] = RETRY_AFTER
    return found


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte span a ``Range`` header asks for; ``None`` for the whole file (no header, or one this
    server ignores: another unit, several ranges, bad syntax, as RFC 9110 allows).

    Raises:
        ValueError: The range cannot be satisfied (it starts at or beyond ``size``).
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:  # the last N bytes
        length = int(match[2])
        if length == 0 or size == 0:
            raise ValueError("an empty suffix range")
        return max(0, size - length), size - 1
    start = int(match[1])
    end = int(match[2]) if match[2] else size - 1
    if match[2] and end < start:
        return None  # invalid: ignored
    if start >= size:
        raise ValueError("the range starts beyond the end")
    return start, min(end, size - 1)


def serve_evidence(storage: Storage, owner: str, event_id: str, name: str, range_header: str | None,
                   extra_headers: dict[str, str] | None = None) -> Response:
    """One evidence file of the owner's event, whole or the part ``range_header`` asks for.

    Raises:
        EvidenceNotFound: The event has no such file, or it is someone else's.
        StoreUnavailable: The storage does not answer.
    """
    try:
        meta = read_meta(storage, event_id)
        if meta is None or meta.owner != owner or name not in meta.sizes:
            raise EvidenceNotFound(f"no {name} for event {event_id}")
        key = evidence_key(event_id, name)
        size = storage.object_size(key)
    except StorageUnavailable as exc:
        raise StoreUnavailable(f"the storage is unavailable: {exc}") from exc
    except StorageError as exc:
        raise EvidenceNotFound(f"no {name} for event {event_id}") from exc
    if size is None:
        raise EvidenceNotFound(f"no {name} for event {event_id}")
    headers = {"Cache-Control": "private, max-age=3600", **(extra_headers or {})}
    if name == "clip.mp4":  # where the clip lies on the source's clock: a player aligns the score curve with it
        for header, value in (("X-Clip-Start-S", meta.clip_start_s), ("X-Clip-End-S", meta.clip_end_s)):
            if value is not None:
                headers[header] = f"{value:.3f}"
    return ranged_response(f"{name} of event {event_id}", size, range_header, headers, FILES[name],
                           lambda start, end: storage.read_range(key, start, end))


def ranged_response(what: str, size: int, range_header: str | None, headers: dict[str, str], media_type: str,
                    read: Callable[[int, int], Iterable[bytes]]) -> Response:
    """``what`` (``size`` bytes, ``read(start, end)`` gives an inclusive span of them), whole (200) or the part
    ``range_header`` asks for (206), or 416 when that part lies outside it."""
    headers = {"Accept-Ranges": "bytes", **headers}
    try:
        span = parse_range(range_header, size)
    except ValueError:
        return error_response(416, f"{what} has {size} bytes; the range {range_header!r} is outside it",
                              "range_not_satisfiable", headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end = span if span is not None else (0, size - 1)
    headers["Content-Length"] = str(end - start + 1)
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    body: Iterable[bytes] = read(start, end) if size else iter(())
    return StreamingResponse(body, status_code=206 if span is not None else 200, media_type=media_type,
                             headers=headers)


@router.get("/{event_id}/snapshot.jpg", response_class=Response, responses=evidence_responses("image/jpeg"))
def event_snapshot(event_id: EventId, store: StoreDep, owner: OwnerDep, range: RangeHeader = None) -> Response:
    """The frame of the event's peak snippet (JPEG, the source's resolution)."""
    return serve_evidence(store.storage, owner, event_id, "snapshot.jpg", range)


@router.get("/{event_id}/thumbnail.jpg", response_class=Response, responses=evidence_responses("image/jpeg"))
def event_thumbnail(event_id: EventId, store: StoreDep, owner: OwnerDep, range: RangeHeader = None) -> Response:
    """The snapshot scaled down to VAD_EVIDENCE_THUMBNAIL_WIDTH pixels wide (JPEG)."""
    return serve_evidence(store.storage, owner, event_id, "thumbnail.jpg", range)


_CLIP_HEADERS = {"X-Clip-Start-S": {"description": "Where the clip begins on the source's clock (stream seconds or "
                                                   "seconds into the video): the clip's time 0.",
                                    "schema": {"type": "number"}},
                 "X-Clip-End-S": {"description": "Where it ends on the same clock.", "schema": {"type": "number"}}}
_CLIP_RESPONSES = evidence_responses("video/mp4")
for _code in (200, 206):
    _CLIP_RESPONSES[_code] = {**_CLIP_RESPONSES[_code], "headers": _CLIP_HEADERS}


@router.get("/{event_id}/clip.mp4", response_class=Response, responses=_CLIP_RESPONSES)
def event_clip(event_id: EventId, store: StoreDep, owner: OwnerDep, range: RangeHeader = None) -> Response:
    """The clip from the keyframe before the pre-roll to the end of the post-roll (MP4, the source's codec, not
    re-encoded; `+faststart`, so that a browser plays and seeks in it as it arrives)."""
    return serve_evidence(store.storage, owner, event_id, "clip.mp4", range)
