"""Live streams shared by the API and the workers: the stream record, its statuses, Redis keys and URL policy.

A stream is created by the API (``POST /v1/streams``) as ``queued`` and owned by one worker process at a time
through a **lease** (``SET NX PX``) renewed by heartbeat. Every claim increments the stream's **fencing counter**;
the owner's token is the value it got, and each of its writes (status, timeline, events) goes through a script
(:mod:`vad.streamlua`) that refuses it unless the counter still equals the token and the lease is still its own.
A worker that lost its lease can therefore write nothing more, and each event is recorded by one owner only.
``DELETE`` increments the counter too, so a deleted stream's owner is fenced off at once.

Keys under the jobs' prefix (``vad:`` by default):

* ``{prefix}stream:{id}``            hash: the stream record (JSON-encoded fields, like the job record)
* ``{prefix}stream:{id}:lease``      string: ``<worker>/<token>`` of the owner, with a TTL (the lease)
* ``{prefix}stream:{id}:fence``      integer: the fencing counter (the last token given out)
* ``{prefix}stream:{id}:timeline``   Redis stream: one entry per scored snippet, trimmed to the timeline retention
* ``{prefix}stream:{id}:events``     Redis stream: one entry per event opened or closed (their ids are the SSE ids)
* ``{prefix}streams:owner:{owner}``  sorted set: the stream ids of one API key (score: when the entry expires)
* ``{prefix}streams:active``         sorted set: streams not stopped or failed, oldest first (what workers claim)
* ``{prefix}streams:webhooks``       list: ``<stream id> <event entry id>`` of webhooks to send (any worker sends)
* ``{prefix}streams:workers``        hash: worker name → JSON ``{capacity, running, at}`` (stream-capable workers)
* ``{prefix}streams:control``        pub/sub channel: a stream id is published when the stream must stop now
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import logging
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from vad.exceptions import StreamRefused
from vad.urls import redact_url

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https", "udp", "rtp", "srt", "tcp")
"""URL schemes a stream may use: what FFmpeg reads over the network. Never ``file:`` or a local path."""

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
MAX_URL_CHARS = 2048

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
    anyone uses ``display_url`` (:func:`vad.urls.redact_url`).
    """

    id: str
    owner: str = ""
    name: str = ""
    url: str = ""
    display_url: str = ""
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
    open_event: dict[str, Any] | None = None
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


def encode_fields(**fields: Any) -> dict[str, str]:
    """Field updates for a stream hash, JSON-encoded like :meth:`StreamRecord.to_redis`."""
    return {k: json.dumps(v.value if isinstance(v, StrEnum) else v) for k, v in fields.items()}


class StreamKeys:
    """Key names of streams under the jobs' prefix."""

    def __init__(self, prefix: str = "vad:") -> None:
        self.prefix = prefix

    def record(self, stream_id: str) -> str:
        return f"{self.prefix}stream:{stream_id}"

    def lease(self, stream_id: str) -> str:
        return f"{self.prefix}stream:{stream_id}:lease"

    def fence(self, stream_id: str) -> str:
        return f"{self.prefix}stream:{stream_id}:fence"

    def timeline(self, stream_id: str) -> str:
        return f"{self.prefix}stream:{stream_id}:timeline"

    def events(self, stream_id: str) -> str:
        return f"{self.prefix}stream:{stream_id}:events"

    def by_owner(self, owner: str) -> str:
        return f"{self.prefix}streams:owner:{owner}"

    @property
    def active(self) -> str:
        return f"{self.prefix}streams:active"

    @property
    def webhooks(self) -> str:
        return f"{self.prefix}streams:webhooks"

    @property
    def control(self) -> str:
        return f"{self.prefix}streams:control"

    @property
    def workers(self) -> str:
        """Hash: worker name → JSON ``{capacity, running, at}``, refreshed by each stream-capable worker."""
        return f"{self.prefix}streams:workers"

    def script_keys(self, stream_id: str, owner: str) -> list[str]:
        """KEYS of the scripts in :mod:`vad.streamlua`, in their order."""
        return [self.record(stream_id), self.lease(stream_id), self.fence(stream_id), self.timeline(stream_id),
                self.events(stream_id), self.active, self.webhooks, self.by_owner(owner)]


ENTRY_ID = re.compile(r"(0|[1-9][0-9]{0,19})(-(0|[1-9][0-9]{0,19}))?")
"""A Redis stream entry id (``<ms>-<seq>``, or ``<ms>`` alone) as a client may send it back."""


def parse_entry_id(text: str) -> tuple[int, int] | None:
    """``"1700000000000-3"`` → ``(1700000000000, 3)``; ``None`` for anything that is not an entry id in range."""
    if not ENTRY_ID.fullmatch(text):
        return None
    ms, _, seq = text.partition("-")
    parsed = int(ms), int(seq or 0)
    return parsed if all(part < 2**64 for part in parsed) else None


# --- URL policy -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamTarget:
    """A stream URL that passed the policy.

    Attributes:
        url: The URL as given (credentials included: only the worker that connects uses it).
        display_url: The URL without credentials or secret query values, the only form ever shown.
        scheme: Lower-case scheme.
        host: Host name or address, lower case.
        port: The port, when the URL or the scheme gives one.
        addresses: What the host resolved to, every one inside the allow-list.
    """

    url: str
    display_url: str
    scheme: str
    host: str
    port: int | None
    addresses: tuple[str, ...]


Resolver = Callable[[str, int | None], Sequence[str]]


def resolve_host(host: str, port: int | None) -> tuple[str, ...]:
    """Every IPv4/IPv6 address of ``host`` (no connection is made)."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)))


def _split(entries: Sequence[str]) -> tuple[list[ipaddress.IPv4Network | ipaddress.IPv6Network], list[str]]:
    networks, names = [], []
    for entry in (e.strip().lower() for e in entries):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            names.append(entry)
    return networks, names


def _address_allowed(address: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.0.0.7 is 10.0.0.7
    return any(ip.version == net.version and ip in net for net in networks)


def _nocase(text: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in text)


_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PORT = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
_SCHEME = "(" + "|".join(_nocase(s) for s in sorted(STREAM_SCHEMES, key=len, reverse=True)) + ")"
_USERINFO = "([A-Za-z0-9._~%!$&'()*+,;=:-]*@)?"
_REST = "(:" + _PORT + ")?([/?#][!-~]*)?"
_ANY_HOST = r"([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])"
STREAM_URL_SYNTAX = f"^{_SCHEME}://{_USERINFO}{_ANY_HOST}{_REST}$"
"""What a stream URL looks like (JSON Schema / ECMA regex): scheme, optional user info, host, port, and printable
ASCII after (percent-encode anything else)."""


def _network_pattern(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str | None:
    """A regex of the addresses of an IPv4 network as URL hosts (octet by octet), or of one IPv6 address."""
    if isinstance(net, ipaddress.IPv6Network):
        return re.escape(f"[{net.network_address}]") if net.prefixlen == 128 else None
    first, last = net.network_address.packed, net.broadcast_address.packed
    parts = []
    for lo, hi in zip(first, last, strict=True):
        if lo == hi:
            parts.append(str(lo))
        elif (lo, hi) == (0, 255):
            parts.append(_OCTET)
        else:
            parts.append("(" + "|".join(str(v) for v in range(hi, lo - 1, -1)) + ")")
    return r"\.".join(parts)


def url_pattern(allowlist: Sequence[str]) -> str | None:
    """The JSON Schema ``pattern`` of the stream URLs ``allowlist`` accepts by their host alone (``None``: none).

    Host names on the list, and the addresses of its IPv4 networks and single IPv6 addresses, written in the URL.
    A name not on the list that resolves inside a listed network is accepted too; a pattern cannot say so.
    """
    networks, names = _split(allowlist)
    hosts = [_nocase(re.escape(n)).replace(r"\*", "[A-Za-z0-9_.-]*") for n in names]
    hosts += [p for p in (_network_pattern(net) for net in networks) if p is not None]
    if not hosts:
        return None
    return f"^{_SCHEME}://{_USERINFO}({'|'.join(hosts)}){_REST}$"


def _parse(url: str) -> tuple[str, str, int | None]:
    if len(url) > MAX_URL_CHARS:
        raise StreamRefused(f"the stream URL is longer than {MAX_URL_CHARS} characters")
    if "://" not in url:
        raise StreamRefused("the stream URL must be a network URL such as rtsp://camera/stream; local paths "
                            "are never read")
    scheme = url.split("://", 1)[0].lower()
    if scheme not in STREAM_SCHEMES:
        raise StreamRefused(f"stream URLs may use {', '.join(STREAM_SCHEMES)}, not {scheme[:20]!r}:")
    if not re.fullmatch(STREAM_URL_SYNTAX[1:-1], url):
        raise StreamRefused("the stream URL is not scheme://[user:password@]host[:port][/path]: use printable "
                            "ASCII (percent-encode the rest) and a port up to 65535")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise StreamRefused(f"the stream URL cannot be parsed ({redact_url(str(exc))})") from exc
    host = (parts.hostname or "").lower()
    if not host:
        raise StreamRefused("the stream URL has no host")
    return scheme, host, port if port is not None else DEFAULT_PORTS.get(scheme)


def check_stream_url(url: str, allowlist: Sequence[str], resolve: Resolver = resolve_host) -> StreamTarget:
    """Check ``url`` against the stream policy; the target with the addresses it was checked at.

    A URL is accepted when its scheme is one of :data:`STREAM_SCHEMES` and every address its host resolves to is
    allowed: inside a CIDR (or equal to an address) of ``allowlist``, or the host name itself matches a name
    entry of ``allowlist`` (``cam1.site``, ``*.cams.example.com``). An empty allow-list accepts nothing: streams
    are off.

    Raises:
        StreamRefused: Streams are off, or the URL, its host or one of its addresses is not allowed; the message
            never contains the URL's credentials.
    """
    if not allowlist:
        raise StreamRefused("live streams are disabled on this deployment: the operator has not set "
                            "VAD_STREAM_ALLOWLIST (the hosts and networks streams may reach)")
    scheme, host, port = _parse(url)
    networks, names = _split(allowlist)
    shown = redact_url(url)
    named = any(fnmatch.fnmatchcase(host, pattern) for pattern in names)  # the operator trusts that name's DNS
    try:
        addresses = tuple(resolve(host.strip("[]"), port))
    except (OSError, UnicodeError) as exc:
        raise StreamRefused(f"the stream host {host!r} does not resolve") from exc
    if not addresses:
        raise StreamRefused(f"the stream host {host!r} has no IPv4 or IPv6 address")
    outside = [] if named else [a for a in addresses if not _address_allowed(a, networks)]
    if outside:
        raise StreamRefused(f"the stream host {host!r} resolves to {', '.join(outside)}, outside the allow-list "
                            "(VAD_STREAM_ALLOWLIST)")
    return StreamTarget(url, shown, scheme, host, port, addresses)


def check_transport(target: StreamTarget, transport: str | None) -> None:
    """Check that ``transport`` (``None``: the deployment's default) fits the stream's URL.

    Raises:
        StreamRefused: A transport for a URL that is not RTSP, or ``udp`` for ``rtsps`` (RTSP over TLS carries
            its media in the TLS connection only).
    """
    if transport is None:
        return
    if target.scheme not in RTSP_SCHEMES:
        raise StreamRefused(f"transport {transport!r} applies to rtsp:// and rtsps:// URLs only, not {target.scheme}:"
                            " (leave it out)")
    if target.scheme == "rtsps" and transport == "udp":
        raise StreamRefused("rtsps:// carries its media over TCP (inside TLS) only: use transport 'tcp' or 'auto'")


def transport_schema() -> dict[str, Any]:
    """:func:`check_transport` as JSON Schema, for a request body with ``url`` and ``transport``: a transport
    only with an ``rtsp``/``rtsps`` URL, ``udp`` only with ``rtsp``."""
    def given(*values: str) -> dict[str, Any]:
        return {"properties": {"transport": {"enum": list(values)}}, "required": ["transport"]}

    def url_of(*schemes: str) -> dict[str, Any]:
        return {"properties": {"url": {"pattern": f"^({'|'.join(_nocase(s) for s in schemes)})://"}}}

    return {"allOf": [{"if": given(*get_args(RtspTransport)), "then": url_of(*RTSP_SCHEMES)},
                      {"if": given("udp"), "then": url_of("rtsp")}]}


def display_name(name: str | None, target: StreamTarget) -> str:
    """The stream's name as shown: the one given (a URL in it is redacted too) or the URL's host and path."""
    if name and name.strip():
        return redact_url(name.strip())[:100]
    parts = urlsplit(target.display_url)
    return f"{target.host}{parts.path}"[:100]
