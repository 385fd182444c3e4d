"""Live streams: create, list, read, stop and delete them; their events (JSON or Server-Sent Events) and scores."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse

from service.api.deps import (
    BaseUrlDep,
    BundleStoreDep,
    EventIndexDep,
    OwnerDep,
    SettingsDep,
    StoreDep,
    StreamStoreDep,
    require_streams,
)
from service.api.errors import error_responses
from service.api.models import (
    PromoteBody,
    StreamBundles,
    StreamCalibrate,
    StreamCreate,
    StreamEvents,
    StreamList,
    StreamPublic,
    StreamTimeline,
)
from service.api.routes.evidence import RangeHeader, evidence_responses, ranged_response, serve_evidence
from service.api.sse import event_stream
from service.exceptions import CalibrationUnavailable, EvidenceNotFound, InvalidStream
from service.streams import event_body, score_body
from vad.alerts import MIN_NORMAL_S, CalibrationError
from vad.exceptions import CallbackRefused, StreamRefused
from vad.net.rules import check_callback_url, check_stream_url, display_name
from vad.streams import StreamRecord, check_transport

router = APIRouter(prefix="/v1/streams", tags=["streams"])

NO_STREAM = (404, "No such stream (it was deleted, belongs to another API key, or its retention ended)")
ENTRY_ID_PATTERN = "^(0|[1-9][0-9]{0,18})(-(0|[1-9][0-9]{0,18}))?$"  # 19 digits: always inside Redis' 64-bit range
MAX_TIME_S = 1e11
_UNPARSABLE = (400, "The body could not be parsed (JSON that is not UTF-8)")


def _public(record: StreamRecord, base: str, store: Any) -> StreamPublic:
    return StreamPublic.from_record(record, base, store.queue_position(record))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=StreamPublic,
             responses={201: {"headers": {"Location": {"description": "The stream's URL.",
                                                       "schema": {"type": "string"}}}},
                        **error_responses(
                            _UNPARSABLE,
                            401, (422, "Refused: the URL is not a network URL of an allowed scheme or its host "
                                       "resolves outside VAD_STREAM_ALLOWLIST, an option (name, model, threshold, "
                                       "callback_url) is invalid, or the body is not a JSON object of these fields"),
                            503)},
             dependencies=[Depends(require_streams)])
def create_stream(body: StreamCreate, settings: SettingsDep, streams: StreamStoreDep, jobs: StoreDep,
                  owner: OwnerDep, base: BaseUrlDep) -> JSONResponse:
    """Watch a camera or feed: the stream is queued until a worker with a free place takes it."""
    try:
        target = check_stream_url(body.url, settings.stream_allowlist)
        check_transport(target.scheme, body.transport)
    except StreamRefused as exc:
        raise InvalidStream(str(exc)) from exc
    record_target = None
    if body.record_url:
        try:
            record_target = check_stream_url(body.record_url, settings.stream_allowlist)
        except StreamRefused as exc:
            raise InvalidStream(f"record_url: {exc}") from exc
    model = body.model or None
    known = jobs.model_names()
    if model is not None and known and model not in known:
        raise InvalidStream(f"unknown model {model!r}; the workers serve {', '.join(known)}")
    callback = body.callback_url or None
    if callback:
        try:
            check_callback_url(callback, settings.callback_allowlist, settings.callback_allow_private)
        except CallbackRefused as exc:
            raise InvalidStream(str(exc)) from exc
    record = streams.create(StreamRecord(
        id=secrets.token_urlsafe(12), owner=owner, name=display_name(body.name, target), url=body.url,
        display_url=target.display_url, record_url=body.record_url or None,
        display_record_url=record_target.display_url if record_target is not None else None, model=model,
        threshold=body.threshold, callback_url=callback, transport=body.transport,
        auto_calibrate=body.auto_calibrate, reason="waiting for a worker with a free place"))
    public = _public(record, base, streams)
    return JSONResponse(public.model_dump(mode="json", by_alias=True), status_code=status.HTTP_201_CREATED,
                        headers={"Location": public.links.self})


@router.get("", response_model=StreamList, response_model_by_alias=True, responses=error_responses(401, 503))
def list_streams(streams: StreamStoreDep, owner: OwnerDep, base: BaseUrlDep) -> StreamList:
    """The key's streams, newest first; stopped and failed ones until their retention ends."""
    return StreamList(streams=[_public(record, base, streams) for record in streams.for_owner(owner)])


@router.get("/{stream_id}", response_model=StreamPublic, response_model_by_alias=True,
            responses=error_responses(401, NO_STREAM, 503))
def get_stream(stream_id: str, streams: StreamStoreDep, owner: OwnerDep, base: BaseUrlDep) -> StreamPublic:
    """Status (with its reason and since when), source fps and size, counts, lag, last score and the open event."""
    return _public(streams.get(stream_id, owner), base, streams)


@router.post("/{stream_id}/stop", response_model=StreamPublic, response_model_by_alias=True,
             responses=error_responses(401, NO_STREAM, 503))
def stop_stream(stream_id: str, streams: StreamStoreDep, owner: OwnerDep, base: BaseUrlDep) -> StreamPublic:
    """Stop the stream now and keep it: it is `stopped` in this answer (its worker stops within a second), its open
    event is closed, and its record, events and timeline stay readable for VAD_STREAM_RETENTION_S. A stream that has
    already stopped or failed is answered as it is (the call can be repeated)."""
    record = streams.get(stream_id, owner)
    if not record.status.terminal:
        streams.stop(record)
        record = streams.get(stream_id, owner)
    return _public(record, base, streams)


@router.post("/{stream_id}/calibrate", response_model=StreamPublic, response_model_by_alias=True,
             responses=error_responses(
                 _UNPARSABLE, 401, NO_STREAM,
                 (409, "The window is shorter than 120 s, or the stream's timeline does not hold enough scores of "
                       "it (at least 120 s of scored snippets; it keeps the last VAD_STREAM_TIMELINE_RETENTION_S)"),
                 (422, "The body is not {normal_since, normal_until, target_false_alarms_per_hour[, min_event_s, "
                       "merge_gap_s, floor]} in range"), 503))
def calibrate_stream(stream_id: str, body: StreamCalibrate, streams: StreamStoreDep, owner: OwnerDep,
                     base: BaseUrlDep) -> StreamPublic:
    """Calibrate the stream's threshold on a stretch of its footage declared normal, to at most
    `target_false_alarms_per_hour` false alarms per hour (a peaks-over-threshold fit of its scores' alarm maxima,
    with a floor; docs/alerts.md). The scores are the stream's timeline between `normal_since` and `normal_until`.
    The threshold is in force at once (its worker applies it within a second, without a restart) and the answer's
    `alert` shows it with the calibration's figures. A later false-alarm verdict on one of its events may raise it
    (`source`: verdict)."""
    record = streams.get(stream_id, owner)
    if body.normal_until - body.normal_since < MIN_NORMAL_S:  # a rule across two fields: not the schema's (422)
        raise CalibrationUnavailable(f"the window is {body.normal_until - body.normal_since:.0f} s long: calibration "
                                     f"needs at least {MIN_NORMAL_S:.0f} s of normal footage")
    try:
        streams.calibrate(record, body.normal_since, body.normal_until, target=body.target_false_alarms_per_hour,
                          min_event_s=body.min_event_s, merge_gap_s=body.merge_gap_s, floor=body.floor)
    except CalibrationError as exc:
        raise CalibrationUnavailable(str(exc)) from exc
    return _public(streams.get(stream_id, owner), base, streams)


@router.delete("/{stream_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=error_responses(401, NO_STREAM, 503))
def delete_stream(stream_id: str, streams: StreamStoreDep, events: EventIndexDep, jobs: StoreDep,
                  bundles: BundleStoreDep, owner: OwnerDep) -> Response:
    """Delete the stream: it stops if it runs (its worker stops within a second) and its record, events, timeline
    and its events' evidence (snapshots, clips) are removed at once, its per-camera bundles and their lineage too,
    and its events leave the event history (GET /v1/events) with their verdicts and saved features; every route of
    it answers 404 afterwards, a second DELETE included. To stop it and keep what it recorded,
    `POST /v1/streams/{stream_id}/stop`."""
    streams.delete(streams.get(stream_id, owner))
    events.forget("stream", stream_id, jobs.storage)  # after the delete: its fenced owner can record no more
    jobs.delete_evidence("stream", stream_id)
    bundles.forget(stream_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- per-camera bundles (issue 20): adaptation from verdicts, shadow, promotion, rollback ------------------------------

def _bundles(stream_id: str, bundles: Any) -> StreamBundles:
    book = bundles.book(stream_id)
    return StreamBundles.model_validate({
        "active": book.active or None, "shadow": book.shadow or None, "adaptation": book.adaptation,
        "bundles": book.entries(), "shadow_events": bundles.shadow_events(stream_id)})


_ADAPT_409 = (409, "An adaptation of this stream is already queued or running")


@router.post("/{stream_id}/adapt", status_code=status.HTTP_202_ACCEPTED, response_model=StreamBundles,
             responses=error_responses(401, NO_STREAM, _ADAPT_409, 503))
def adapt_stream(stream_id: str, streams: StreamStoreDep, bundles: BundleStoreDep, owner: OwnerDep) -> StreamBundles:
    """Fine-tune this camera's own DSANet from its verdicts (false alarms as normal, true alerts as abnormal) and
    its saved normal windows, in a worker, without decoding video again. `adaptation` shows the job's stage, percent
    and, if it fails, why (e.g. too few verdicts). The candidate is compared with its parent on held-out verdicts and
    normal windows: a better one runs in **shadow** beside the active model (its events recorded, not published)
    and replaces it once the shadow rule holds; a worse one is `rejected` (docs/alerts.md has the rules)."""
    streams.get(stream_id, owner)
    bundles.adapt(stream_id)
    return _bundles(stream_id, bundles)


@router.get("/{stream_id}/bundles", response_model=StreamBundles, responses=error_responses(401, NO_STREAM, 503))
def stream_bundles(stream_id: str, streams: StreamStoreDep, bundles: BundleStoreDep, owner: OwnerDep
                   ) -> StreamBundles:
    """The stream's per-camera bundles: the active one (null: the deployment's model), the shadow, the last
    adaptation, every bundle's lineage (parent, data, time, held-out metrics, shadow tally, state and why) and
    the shadow's newest events."""
    streams.get(stream_id, owner)
    return _bundles(stream_id, bundles)


@router.post("/{stream_id}/bundles/promote", response_model=StreamBundles, responses=error_responses(
    _UNPARSABLE, 401, NO_STREAM,
    (409, "Nothing runs in shadow, the shadow rule does not hold yet (without force), or the bundles changed "
          "meanwhile"),
    (422, "The body is not a JSON object with `force` only"),
    503))
def promote_bundle(stream_id: str, streams: StreamStoreDep, bundles: BundleStoreDep, owner: OwnerDep,
                   body: PromoteBody | None = None) -> StreamBundles:
    """Make the shadow bundle the active one now: it must have scored VAD_ADAPT_SHADOW_MIN_SNIPPETS snippets and
    raised no more events than the active model over them, unless `force` is true. The stream's worker switches
    within a second, without a restart."""
    streams.get(stream_id, owner)
    bundles.promote(stream_id, force=body.force if body is not None else False)
    return _bundles(stream_id, bundles)


@router.post("/{stream_id}/bundles/rollback", response_model=StreamBundles, responses=error_responses(
    401, NO_STREAM, (409, "The stream runs the deployment's model already, or the bundles changed meanwhile"), 503))
def rollback_bundle(stream_id: str, streams: StreamStoreDep, bundles: BundleStoreDep, owner: OwnerDep
                    ) -> StreamBundles:
    """Retire the active bundle and make its parent active again (the deployment's model when it has none). The
    stream's worker switches within a second; the retired bundle stays in the lineage."""
    streams.get(stream_id, owner)
    bundles.rollback(stream_id)
    return _bundles(stream_id, bundles)


_SSE_DOC = ("With `Accept: text/event-stream`: Server-Sent Events. Each event is `id: <entry id>`, `event: open` or "
            "`close`, `data: <the event as JSON>`; a reconnecting client sends `Last-Event-ID` and gets every later "
            "event once. `scores=true` adds `event: score` messages (no id) for each snippet scored from now on. "
            "Comments (`: keep-alive`) come every 15 s; the stream ends after the last event of a stopped stream.")
_EVENTS_200: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": {"type": "string"}, "description": _SSE_DOC}}},
    204: {"description": "Server-Sent Events: the stream has ended and has no events after the one asked for (an "
                         "EventSource stops reconnecting)"}}


@router.get("/{stream_id}/events", response_model=StreamEvents, response_model_by_alias=True,
            responses={**_EVENTS_200, **error_responses(
                401, NO_STREAM, (422, "`since` or `Last-Event-ID` is not an event id (`<ms>-<seq>`), or `limit` is "
                                      "outside 1-10000"), 503)})
def stream_events(
    stream_id: str, request: Request, streams: StreamStoreDep, owner: OwnerDep,
    since: Annotated[str | None, Query(pattern=ENTRY_ID_PATTERN, description="Only entries after this id.")] = None,
    limit: Annotated[int, Query(ge=1, le=10000, description="At most this many entries (JSON).")] = 1000,
    scores: Annotated[bool, Query(description="Server-Sent Events only: also send each new score.")] = False,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", pattern=ENTRY_ID_PATTERN,
                                                description="Server-Sent Events: resume after this id.")] = None,
) -> Response:
    """Events opened and closed, oldest first: JSON after ``since``, or a live Server-Sent Events stream."""
    record = streams.get(stream_id, owner)
    after = last_event_id or since or "0"
    if "text/event-stream" in request.headers.get("accept", ""):
        if record.status.terminal and not streams.events(stream_id, after, count=1):
            return Response(status_code=status.HTTP_204_NO_CONTENT)
        return StreamingResponse(event_stream(request, streams.keys, stream_id, after, scores),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    entries = streams.events(stream_id, after, count=limit)
    body = StreamEvents.model_validate({"events": [event_body(e) for e in entries],
                                        "last_id": entries[-1].id if entries else None})
    return JSONResponse(body.model_dump(mode="json", by_alias=True))


@router.get("/{stream_id}/timeline", response_model=StreamTimeline, responses=error_responses(
    401, NO_STREAM, (422, "`since` or `until` is not a unix time from 0 to 1e11 s, or `limit` is outside 1-10000"),
    503))
def stream_timeline(
    stream_id: str, streams: StreamStoreDep, owner: OwnerDep,
    since: Annotated[float | None, Query(ge=0, le=MAX_TIME_S, description="Unix time (s) of the first score.")] = None,
    until: Annotated[float | None, Query(ge=0, le=MAX_TIME_S, description="Unix time (s) of the last score.")] = None,
    limit: Annotated[int, Query(ge=1, le=10000, description="At most this many points, the oldest first.")] = 1000,
) -> StreamTimeline:
    """Scores per snippet between two times, kept for VAD_STREAM_TIMELINE_RETENTION_S."""
    record = streams.get(stream_id, owner)
    empty = since is not None and until is not None and until < since  # nothing lies between
    entries = [] if empty else streams.timeline(stream_id, since, until, limit)
    return StreamTimeline.model_validate({"classes": streams.model_classes(record.model),
                                          "points": [score_body(e) for e in entries]})


LATEST_SCAN = 20
"""How many of a stream's newest events the latest snapshot is looked for in (a live event's evidence is written
the post-roll after it closed, so the newest may have none yet)."""
_SNAPSHOT_RESPONSES = evidence_responses("image/jpeg")
_SNAPSHOT_RESPONSES[404] = {**_SNAPSHOT_RESPONSES[404], "description": (
    "No such stream (or another API key's), or it has no live frame (stopped a while ago, evidence or "
    "VAD_STREAM_SNAPSHOT_EVERY_S off) and none of its last 20 events has a snapshot yet (no event, or written only "
    "once the post-roll after the event has passed)")}
_SNAPSHOT_HEADERS = {
    "X-Snapshot": {"description": "`live`: the camera's latest frame; `event`: the newest event's snapshot.",
                   "schema": {"type": "string", "enum": ["live", "event"]}},
    "X-Frame-At": {"description": "`live`: when the worker wrote the frame (unix time).",
                   "schema": {"type": "number"}},
    "X-Event-Id": {"description": "`event`: the event whose snapshot this is.", "schema": {"type": "string"}}}
for _code in (200, 206):
    _SNAPSHOT_RESPONSES[_code] = {**_SNAPSHOT_RESPONSES[_code], "headers": _SNAPSHOT_HEADERS}
_SNAPSHOT_RESPONSES.pop(422)


@router.get("/{stream_id}/snapshot.jpg", response_class=Response, responses=_SNAPSHOT_RESPONSES)
def stream_snapshot(stream_id: str, streams: StreamStoreDep, events: EventIndexDep, jobs: StoreDep,
                    owner: OwnerDep, range: RangeHeader = None) -> Response:
    """The camera's latest picture (JPEG, the scored stream's resolution), `Cache-Control: no-cache`. While the
    stream runs, its worker writes its latest kept frame every VAD_STREAM_SNAPSHOT_EVERY_S (10 s): that frame, with
    `X-Snapshot: live` and the unix time it was written in `X-Frame-At`; it expires a while after the stream stops.
    Without one: the frame of the peak snippet of the stream's latest event that has a snapshot, with
    `X-Snapshot: event` and its event's id in `X-Event-Id`."""
    streams.get(stream_id, owner)  # 404 for another key's stream
    frame = streams.frame(stream_id)
    if frame is not None:
        data = frame[0]
        return ranged_response(f"the latest frame of stream {stream_id}", len(data), range,
                               {"Cache-Control": "no-cache", "X-Snapshot": "live", "X-Frame-At": f"{frame[1]:.3f}"},
                               "image/jpeg", lambda start, end: iter((data[start:end + 1],)))
    for event_id in events.newest_ids("stream", stream_id, LATEST_SCAN):
        try:
            return serve_evidence(jobs.storage, owner, event_id, "snapshot.jpg", range,
                                  {"Cache-Control": "no-cache", "X-Snapshot": "event", "X-Event-Id": event_id})
        except EvidenceNotFound:
            continue
    raise EvidenceNotFound(f"no snapshot of stream {stream_id} yet: it has no live frame and none of its last "
                           f"{LATEST_SCAN} events has one")

