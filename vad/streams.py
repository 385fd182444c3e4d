"""Live streams shared by the API and the workers: the stream record and its statuses.

A stream is created by the API (``POST /v1/streams``) as ``queued`` and owned by one worker process at a time
through a **lease** (``SET NX PX``) renewed by heartbeat. Every claim increments the stream's **fencing counter**;
the owner's token is the value it got, and each of its writes (status, timeline, events) goes through a script
(:mod:`vad.streamlua`) that refuses it unless the counter still equals the token and the lease is still its own.
A worker that lost its lease can therefore write nothing more, and each event is recorded by one owner only.
``DELETE`` increments the counter too, so a deleted stream's owner is fenced off at once.

Its keys are in :mod:`vad.keys`; which URLs a stream may read is the network policy's (:mod:`vad.net.rules`).
"""

from __future__ import annotations

import json
import logging
import re
import time
from enum import StrEnum
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from vad.alerts import AlertThreshold, AutoCalibrate
from vad.exceptions import StreamRefused

log = logging.getLogger(__name__)

RTSP_SCHEMES = ("rtsp", "rtsps")

RtspTransport = Literal["tcp", "udp", "auto"]
"""How RTSP carries a stream's media: ``tcp`` (interleaved in the RTSP connection), ``udp`` (RTP over UDP), or
``auto`` (TCP first, then UDP; the one that worked is kept for reconnections)."""


class StreamState(StrEnum):
    """What a stream is doing (``status`` of the record)."""

    queued = "queued"  # waiting for a worker with a free place (also after its owner died, until taken over)
    connecting = "connecting"
    live = "live"
    reconnecting = "reconnecting"
    stopped = "stopped"  # by DELETE, or the source ended
    failed = "failed"  # the source could not be read (the reason says why)

    @property
    def terminal(self) -> bool:
        return self in (StreamState.stopped, StreamState.failed)


class StreamRecord(BaseModel):
    """A stream as stored in Redis: the API creates it, its owner updates it.

    ``url`` is the URL as given, credentials included (the owner needs them to connect); everything shown to
    anyone uses ``display_url`` (:func:`vad.net.redact.redact_url`). ``record_url`` (optional) is the camera's
    main stream, read for the events' clips (evidence) beside ``url``, shown as ``display_record_url``.
    """

    id: str
    owner: str = ""
    name: str = ""
    url: str = ""
    display_url: str = ""
    record_url: str | None = None
    display_record_url: str | None = None
    model: str | None = None
    threshold: float | None = None
    callback_url: str | None = None
    transport: RtspTransport | None = None  # RTSP only; None: the workers' VAD_STREAM_RTSP_TRANSPORT
    status: StreamState = StreamState.queued
    reason: str | None = None
    since: float = Field(default_factory=time.time)
    created_at: float = Field(default_factory=time.time)
    stopped_at: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    snippets_scored: int = 0
    snippets_dropped: int = 0
    reconnects: int = 0
    events_opened: int = 0
    events_closed: int = 0
    lag_s: float | None = None
    last_score: float | None = None
    last_score_at: float | None = None
    last_end_s: float | None = None
    last_index: int | None = None  # the last scored snippet's number: a new owner numbers on from it
    clock_origin_at: float | None = None  # Unix time of stream time 0 (its first frame): every owner's clock
    clip_precision: str | None = None  # the precision its owner computes CLIP features at (fp32, int8...)
    open_event: dict[str, Any] | None = None
    alert: AlertThreshold | None = None  # the threshold in force (vad.alerts); None until a worker put one in force
    auto_calibrate: AutoCalibrate | None = None
    worker: str | None = None
    token: int = 0

    def to_redis(self) -> dict[Any, Any]:  # Any: redis-py's mapping type is invariant in its key
        return {k: json.dumps(v) for k, v in self.model_dump(mode="json").items()}

    @classmethod
    def read(cls, stream_id: str, data: dict[Any, Any]) -> StreamRecord | None:
        """The record in a stream hash, or ``None`` when there is none or it cannot be read (logged)."""
        if not data:
            return None
        try:
            decoded = {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in data.items()}
            return cls.model_validate(decoded)
        except ValueError as exc:
            log.warning("stream record %s cannot be read, treated as gone: %s", stream_id,
                        " ".join(str(exc).split())[:300])
            return None


ENTRY_ID = re.compile(r"(0|[1-9][0-9]{0,19})(-(0|[1-9][0-9]{0,19}))?")
"""A Redis stream entry id (``<ms>-<seq>``, or ``<ms>`` alone) as a client may send it back."""


def parse_entry_id(text: str) -> tuple[int, int] | None:
    """``"1700000000000-3"`` → ``(1700000000000, 3)``; ``None`` for anything that is not an entry id in range."""
    if not ENTRY_ID.fullmatch(text):
        return None
    ms, _, seq = text.partition("-")
    parsed = int(ms), int(seq or 0)
    return parsed if all(part < 2**64 for part in parsed) else None


# --- RTSP transport ----------------------------------------------------------------------------------------------


def check_transport(scheme: str, transport: str | None) -> None:
    """Check that ``transport`` (``None``: the deployment's default) fits a stream URL of ``scheme``.

    Raises:
        StreamRefused: A transport for a URL that is not RTSP, or ``udp`` for ``rtsps`` (RTSP over TLS carries
            its media in the TLS connection only).
    """
    if transport is None:
        return
    if scheme not in RTSP_SCHEMES:
        raise StreamRefused(f"transport {transport!r} applies to rtsp:// and rtsps:// URLs only, not {scheme}:"
                            " (leave it out)")
    if scheme == "rtsps" and transport == "udp":
        raise StreamRefused("rtsps:// carries its media over TCP (inside TLS) only: use transport 'tcp' or 'auto'")


def nocase(text: str) -> str:
    """``text`` as a case-insensitive regular expression (``rtsp`` -> ``[Rr][Tt][Ss][Pp]``): JSON Schema's
    ``pattern`` has no flags."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in text)


def transport_schema() -> dict[str, Any]:
    """:func:`check_transport` as JSON Schema, for a request body with ``url`` and ``transport``: a transport
    only with an ``rtsp``/``rtsps`` URL, ``udp`` only with ``rtsp``."""
    def given(*values: str) -> dict[str, Any]:
        return {"properties": {"transport": {"enum": list(values)}}, "required": ["transport"]}

    def url_of(*schemes: str) -> dict[str, Any]:
        return {"properties": {"url": {"pattern": f"^({'|'.join(nocase(s) for s in schemes)})://"}}}

    return {"allOf": [{"if": given(*get_args(RtspTransport)), "then": url_of(*RTSP_SCHEMES)},
                      {"if": given("udp"), "then": url_of("rtsp")}]}
