"""The event history across streams and jobs: list, read, score curve, verdicts."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

from service.api.deps import EventIndexDep, OwnerDep, StoreDep, StreamStoreDep
from service.api.errors import error_responses
from service.events import score_curve
from service.exceptions import EventNotFound
from vad.events import EventPage, EventRecord, EventScores, SourceKind, VerdictBody, decode_cursor, encode_cursor

router = APIRouter(prefix="/v1/events", tags=["events"])
MAX_TIME_S = 1e11
MAX_LIMIT = 200
CURSOR_PATTERN = "^[0-9]{15}[A-Za-z0-9_-]{1,200}$"
NOT_JSON = (400, "The body is not JSON")
NO_EVENT = (404, "No such event (or it belongs to another API key, or its retention ended)")
INVALID = (422, "An invalid filter, limit or cursor, or verdict body")


@router.get("", response_model=EventPage, response_model_by_alias=True, responses=error_responses(401, INVALID, 503))
def list_events(
    index: EventIndexDep, owner: OwnerDep,
    stream_id: Annotated[str | None, Query(max_length=200, description="Only this stream's events.")] = None,
    job_id: Annotated[str | None, Query(max_length=200, description="Only this job's events.")] = None,
    class_: Annotated[str | None, Query(alias="class", max_length=200, description="Only events of this class.")
                      ] = None,
    min_score: Annotated[float | None, Query(ge=0, le=1, description="Only events peaking at least this high.")
                         ] = None,
    since: Annotated[float | None, Query(ge=0, le=MAX_TIME_S, description="Opened at or after this Unix time.")
                     ] = None,
    until: Annotated[float | None, Query(ge=0, le=MAX_TIME_S, description="Opened at or before this Unix time.")
                     ] = None,
    verdict: Annotated[Literal["true_alert", "false_alarm", "none"] | None, Query(
        description="Only events with this verdict (none: not reviewed yet).")] = None,
    reviewed: Annotated[bool | None, Query(
        description="true: only events with a verdict (either kind); false: only those without one (the same as "
                    "`verdict=none`).")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many events.")] = 50,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page, "
                                                                            "unchanged (opaque).")] = None,
) -> EventPage:
    """The caller's events of streams and jobs, newest first (by when they opened; a job's: when it finished).

    Pages are stable: events recorded after the first page came sort before it, so following `next_cursor` never
    repeats or skips one. A filtered page may hold fewer than `limit` events and still have a `next_cursor`.
    Filters combine: `stream_id` and `job_id` together select nothing."""
    if stream_id is not None and job_id is not None:
        return EventPage(events=[], next_cursor=None)  # no event comes from both
    after = decode_cursor(cursor) if cursor is not None else None  # the pattern admits only cursors of ours
    source: tuple[SourceKind, str] | None = None
    if stream_id is not None:
        source = ("stream", stream_id)
    elif job_id is not None:
        source = ("job", job_id)
    found, last = index.page(owner, source=source, cursor=after, limit=limit, since=since, until=until,
                             class_=class_, min_score=min_score, verdict=verdict,
                             reviewed=reviewed)
    return EventPage(events=found, next_cursor=encode_cursor(last) if last else None)


def _event(index: EventIndexDep, event_id: str, owner: str) -> EventRecord:
    record = index.get(event_id, owner)
    if record is None:
        raise EventNotFound(f"no event {event_id}")
    return record


@router.get("/{event_id}", response_model=EventRecord, response_model_by_alias=True,
            responses=error_responses(401, NO_EVENT, 503))
def get_event(event_id: str, index: EventIndexDep, owner: OwnerDep) -> EventRecord:
    """One event, with its verdict and links."""
    return _event(index, event_id, owner)


@router.get("/{event_id}/scores", response_model=EventScores, responses=error_responses(401, NO_EVENT, 503))
def get_event_scores(event_id: str, index: EventIndexDep, owner: OwnerDep, jobs: StoreDep,
                     streams: StreamStoreDep) -> EventScores:
    """The anomaly score of each snippet from 10 s before the event to 10 s after it (a stream's while its
    timeline keeps them: VAD_STREAM_TIMELINE_RETENTION_S)."""
    return score_curve(_event(index, event_id, owner), jobs, streams)


@router.put("/{event_id}/verdict", response_model=EventRecord, response_model_by_alias=True,
            responses=error_responses(NOT_JSON, 401, NO_EVENT, INVALID, 503))
def put_verdict(event_id: str, body: VerdictBody, index: EventIndexDep, streams: StreamStoreDep,
                owner: OwnerDep) -> EventRecord:
    """Say whether the event was a true alert or a false alarm (idempotent: the same body again changes nothing;
    another replaces it). Recorded with the caller's owner id and the time; `vad export-reviews` turns verdicts
    and the event's saved features into training data. A `false_alarm` on a live stream's event raises that
    stream's threshold just above the event's peak, unless that would silence a confirmed true alert of the stream:
    then just below the lowest confirmed true alert's peak; it never lowers it (docs/alerts.md, the stream's
    `alert` shows it)."""
    outcome = index.set_verdict(event_id, owner, body)
    if outcome is None:
        raise EventNotFound(f"no event {event_id}")
    record = outcome[0]
    if body.verdict == "false_alarm" and record.source == "stream":
        stream = streams.records([record.source_id])
        if stream:
            true_alerts, _ = index.page(owner, source=("stream", record.source_id), verdict="true_alert", limit=500)
            streams.after_false_alarm(stream[0], event_id, record.peak_score, [e.peak_score for e in true_alerts])
    return record


@router.delete("/{event_id}/verdict", status_code=status.HTTP_204_NO_CONTENT,
               responses=error_responses(401, NO_EVENT, 503))
def delete_verdict(event_id: str, index: EventIndexDep, owner: OwnerDep) -> Response:
    """Withdraw the event's verdict (204 whether or not it had one)."""
    if index.clear_verdict(event_id, owner) is None:
        raise EventNotFound(f"no event {event_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
