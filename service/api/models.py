"""Response models of the API (the analysis result itself is :class:`vad.schema.AnalysisResult`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vad.alerts import AlertThreshold, AutoCalibrate
from vad.bundles import AdaptationStatus, BundleLineage
from vad.jobstate import JobOptions, JobRecord, JobStatus
from vad.net.patterns import STREAM_SCHEMES
from vad.net.rules import MAX_SOURCE_CHARS, MAX_URL_CHARS
from vad.streams import RtspTransport, StreamRecord, StreamState, transport_schema


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer."""

    detail: str = Field(description="What was wrong and what to do, for people.")
    code: str = Field(description="A stable reason for programs: unauthorized, job_not_found, upload_too_large, "
                                  "unsupported_media, bad_upload, invalid_option, job_not_finished, "
                                  "store_unavailable, not_found, method_not_allowed, ...")


class VideoSource(BaseModel):
    """``POST /v1/videos`` with a JSON body: a video a worker fetches, with the upload's options."""

    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as declared: "true" is not a boolean

    source: str = Field(min_length=1, max_length=MAX_SOURCE_CHARS, description=(
        "https://host/path on a host of VAD_SOURCE_ALLOWLIST (public addresses only, redirects checked the same "
        "way), or s3://bucket/key in a bucket of VAD_SOURCE_BUCKETS. A worker fetches it with the upload's size "
        "cap; the result is the same as uploading the same bytes, deduplicated by content once fetched."))
    model: str | None = Field(None, description="A model the workers serve; empty or omitted: their default.")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Anomaly-score threshold for events.")
    frame_scores: bool = Field(False, description="Also return one score per decoded frame.")
    skip_unchanged: float = Field(0.0, ge=0.0, le=255.0, description=(
        "Reuse the last encoded snippet's CLIP features for a snippet whose frame moved no cell (1/64 of the width) "
        "by more than this many grey levels: fewer encoder passes on static footage; 0 (default): every snippet "
        "encoded, the official protocol."))
    callback_url: str | None = Field(None, description="POSTed the job when it ends (allow-listed).")


class JobLinks(BaseModel):
    self: str
    result: str


class Progress(BaseModel):
    stage: str = Field(description="queued, fetching, decoding, encoding, scoring, writing, evidence (snapshots and "
                                   "clips of the events), done, failed, canceled.")
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


class StreamCreate(BaseModel):
    """``POST /v1/streams``: the camera or feed to watch."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=transport_schema())  # the route checks it

    url: str = Field(min_length=1, max_length=MAX_URL_CHARS, description=(
        f"What FFmpeg reads over the network: {', '.join(STREAM_SCHEMES)} (HLS playlists and MPEG-TS over "
        "http(s)); never a local path or file:. Its host must resolve only to addresses on the deployment's "
        "allow-list (VAD_STREAM_ALLOWLIST). Credentials in it are used to connect and never shown."))
    record_url: str | None = Field(None, max_length=MAX_URL_CHARS, description=(
        "The camera's main (full-resolution) stream, read for the events' clips without decoding, when `url` is a "
        "sub-stream scored at a lower resolution; the same rules as `url`. Omitted: clips come from `url`."))
    name: str | None = Field(None, max_length=100, description="A label for people; the URL's host and path "
                                                               "when omitted.")
    model: str | None = Field(None, description="A model the workers serve; their default when omitted.")
    threshold: float | None = Field(None, ge=0.0, le=1.0, strict=True, description="Anomaly-score threshold of "
                                                                                   "events; the workers' default "
                                                                                   "when omitted.")
    callback_url: str | None = Field(None, description="POSTed each event when it opens and when it closes, signed "
                                                       "like job callbacks (allow-listed).")
    transport: RtspTransport | None = Field(None, description="rtsp:// and rtsps:// only: how the camera sends its "
                                                              "media, tcp (interleaved in the RTSP connection), udp, "
                                                              "or auto (TCP first, then UDP); the workers' default "
                                                              "(VAD_STREAM_RTSP_TRANSPORT, auto) when omitted.")
    auto_calibrate: AutoCalibrate | None = Field(None, description=(
        "Calibrate the threshold automatically on the stream's first `minutes` (declared normal), to at most "
        "`target_false_alarms_per_hour` (docs/alerts.md); the threshold in force until then is the default."))


class StreamCalibrate(BaseModel):
    """``POST /v1/streams/{id}/calibrate``: a stretch of the stream declared normal, and the target rate."""

    model_config = ConfigDict(extra="forbid")

    normal_since: float = Field(ge=0, le=1e11, description="Unix time (s) of the stretch's start (its scores are "
                                                           "read from the stream's timeline).")
    normal_until: float = Field(ge=0, le=1e11, description="Unix time (s) of its end; at least 120 s after the start "
                                                           "(else 409).")
    target_false_alarms_per_hour: float = Field(gt=0, le=3600, description="The target R: at most this many false "
                                                                           "alarms per hour on footage like it.")
    min_event_s: float = Field(0.0, ge=0, le=10, description="The minimum event length the threshold is for (the "
                                                             "tracker then opens events once they last this long).")
    merge_gap_s: float = Field(0.5, ge=0, le=10, description="The event rule's merge gap (the workers' "
                                                             "VAD_STREAM_MERGE_GAP_S, 0.5 by default).")
    floor: float | None = Field(None, ge=0, lt=1, description="The lowest threshold it may choose; default: the "
                                                              "stream's `threshold`, else 0.5 (calibration never "
                                                              "makes a camera more sensitive than out of the box).")


class LiveEventPublic(BaseModel):
    """An event of a live stream (open: ``end_s`` is null)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(description="The event's id, the same when it opens and when it closes.")
    class_name: str = Field(alias="class", description="Most probable abnormal class.")
    class_prob: float | None = None
    start_s: float | None = Field(None, description="Stream time at which it started: seconds since the stream's "
                                                    "first frame, on one clock across reconnections and workers "
                                                    "(an outage shows as a gap).")
    end_s: float | None = Field(None, description="Stream time at which it ended; null while open.")
    peak_score: float | None = None
    mean_score: float | None = None
    opened_at: float | None = Field(None, description="Unix time at which it opened.")
    closed_at: float | None = Field(None, description="Unix time at which it closed.")
    start_at: float | None = Field(None, description="Unix time of start_s: when the video it starts with was "
                                                     "live (the stream clock's origin plus start_s).")
    end_at: float | None = Field(None, description="Unix time of end_s; null while open.")


class StreamSource(BaseModel):
    fps: float | None = Field(None, description="The source's frame rate, once connected.")
    width: int | None = None
    height: int | None = None


class StreamLinks(BaseModel):
    self: str
    events: str
    timeline: str


class StreamPublic(BaseModel):
    """What a client sees of a stream. Its URL never carries credentials or secret query values."""

    id: str
    name: str
    url: str = Field(description="The stream's URL without credentials.")
    record_url: str | None = Field(None, description="The main stream clips are recorded from, without "
                                                     "credentials (null: `url`).")
    model: str | None
    threshold: float | None
    transport: RtspTransport | None = Field(description="RTSP's transport asked for (tcp, udp, auto); null: the "
                                                        "workers' default (VAD_STREAM_RTSP_TRANSPORT).")
    status: StreamState
    reason: str | None = Field(description="Why it is in that status (null when there is nothing to say).")
    since: float = Field(description="Unix time it entered the status.")
    queue_position: int | None = Field(None, description="0 = next to be taken by a worker; null unless queued.")
    created_at: float
    stopped_at: float | None
    source: StreamSource
    snippets_scored: int
    snippets_dropped: int = Field(description="Snippets skipped because scoring fell behind the source.")
    reconnects: int
    events_opened: int
    events_closed: int
    lag_s: float | None = Field(description="Seconds from the latest scored snippet's frame arriving to its score.")
    last_score: float | None
    last_score_at: float | None
    clip_precision: str | None = Field(None, description="The precision its worker computes CLIP features at: "
                                                         "fp32 (the official features), int8 or bf16 where the "
                                                         "worker's precision probe measured them faster and "
                                                         "close enough (docs/streams.md); null before it starts.")
    open_event: LiveEventPublic | None
    alert: AlertThreshold | None = Field(None, description=(
        "The threshold in force, its minimum event length, where it came from (default, calibrated, auto, verdict), "
        "when, and the latest calibration's figures; null until a worker put one in force (then: `threshold`, or "
        "the workers' default)."))
    auto_calibrate: AutoCalibrate | None = None
    links: StreamLinks

    @classmethod
    def from_record(cls, record: StreamRecord, base: str, position: int | None = None) -> StreamPublic:
        link = f"{base}/v1/streams/{record.id}"
        event = record.open_event
        return cls(
            id=record.id, name=record.name, url=record.display_url, record_url=record.display_record_url,
            model=record.model, threshold=record.threshold, transport=record.transport, status=record.status,
            reason=record.reason, since=record.since, queue_position=position,
            created_at=record.created_at, stopped_at=record.stopped_at,
            source=StreamSource(fps=record.fps, width=record.width, height=record.height),
            snippets_scored=record.snippets_scored, snippets_dropped=record.snippets_dropped,
            reconnects=record.reconnects, events_opened=record.events_opened, events_closed=record.events_closed,
            lag_s=record.lag_s, last_score=record.last_score, last_score_at=record.last_score_at,
            clip_precision=record.clip_precision, open_event=LiveEventPublic.model_validate(event) if event else None,
            alert=record.alert, auto_calibrate=record.auto_calibrate,
            links=StreamLinks(self=link, events=f"{link}/events", timeline=f"{link}/timeline"))


class StreamList(BaseModel):
    streams: list[StreamPublic]


class StreamEvent(BaseModel):
    """An event opened or closed: one entry of the stream's events (its ``id`` is the SSE id)."""

    id: str = Field(description="Entry id (<ms>-<seq>); pass it as since= or Last-Event-ID to resume after it.")
    kind: Literal["open", "close"]
    reason: str | None = Field(None, description="Why it closed: scores fell, stopped, source lost, owner lost...")
    at: float = Field(description="Unix time of the entry.")
    event: LiveEventPublic


class StreamEvents(BaseModel):
    events: list[StreamEvent]
    last_id: str | None = Field(description="The last entry's id (pass it as since= for the next page); null when "
                                            "there are none.")


class ScorePoint(BaseModel):
    """One scored snippet of the timeline."""

    id: str = Field(description="Entry id (<ms>-<seq>).")
    index: int = Field(description="Snippet number in the stream (goes on across reconnections and workers; "
                                   "dropped snippets' numbers are skipped).")
    start_s: float | None
    end_s: float | None
    score: float | None
    class_probs: list[float]
    at: float | None = Field(description="Unix time it was scored.")
    lag_s: float | None


class StreamTimeline(BaseModel):
    classes: list[str] = Field(description="Column order of class_probs (empty before the stream's model is known).")
    points: list[ScorePoint]


class ShadowEvent(BaseModel):
    """An event the shadow bundle opened or closed (recorded for comparison, never published)."""

    kind: Literal["open", "close"]
    at: float = Field(description="When it was recorded (Unix time).")
    event: dict = Field(description="The event as the shadow's tracker reported it.")


class StreamBundles(BaseModel):
    """A stream's per-camera bundles: which runs, which runs in shadow, the last adaptation and every bundle's
    lineage (oldest first)."""

    active: str | None = Field(description="The bundle scoring the stream; null: the deployment's model.")
    shadow: str | None = Field(description="The candidate scoring beside it, its events recorded only; null: none.")
    adaptation: AdaptationStatus | None = Field(description="The last adaptation job: state, stage, percent, and "
                                                            "why it failed.")
    bundles: list[BundleLineage]
    shadow_events: list[ShadowEvent] = Field(description="The shadow's newest events, newest first (at most 50).")


class PromoteBody(BaseModel):
    """``POST /v1/streams/{id}/bundles/promote``."""

    model_config = ConfigDict(extra="forbid")

    force: bool = Field(False, description="Promote the shadow even though the shadow rule does not hold yet.")
