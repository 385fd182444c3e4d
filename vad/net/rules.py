"""The policy (:mod:`vad.net.policy`) as each caller applies it: callback URLs, video source URLs, stream URLs.

* **Callbacks** (``callback_url`` of a job or a stream): ``http(s)://`` on ``VAD_CALLBACK_ALLOWLIST``, internal
  addresses only with ``VAD_CALLBACK_ALLOW_PRIVATE``. Checked by the API when the job is created and by the sender
  just before it connects (to the addresses checked then); redirects are not followed.
* **Video sources** (``POST /v1/videos`` with JSON ``{"source": ...}``): ``https://`` on ``VAD_SOURCE_ALLOWLIST``,
  internal addresses only with ``VAD_SOURCE_ALLOW_PRIVATE``; or ``s3://bucket/key`` in a bucket (or
  ``bucket/prefix*`` pattern) of ``VAD_SOURCE_BUCKETS``, read with the storage's endpoint and credentials (leave the
  uploads' own bucket off the list: a source there could name another client's upload). The API checks a source
  when the job is created (422 when refused); the worker checks it again when it fetches, and checks every redirect
  like the first URL before following it (at most :data:`MAX_REDIRECTS`).
* **Live streams** (``POST /v1/streams``): the schemes FFmpeg reads over the network (:data:`STREAM_SCHEMES`), on
  ``VAD_STREAM_ALLOWLIST``, which alone decides (cameras live on private networks); an empty list turns streams
  off. The API checks the URL when the stream is created and the worker again before each start.

Messages show a URL as :func:`vad.net.redact.redact_url` does (a password or a presigned signature is a credential).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from types import MappingProxyType
from urllib.parse import unquote, urlsplit

from vad.exceptions import CallbackRefused, SourceRefused, StreamRefused
from vad.net.patterns import STREAM_SCHEMES, STREAM_URL_SYNTAX
from vad.net.policy import Resolver, Target, UrlRules, check_url, resolve_host
from vad.net.redact import redact_url
from vad.settings import QueueSettings

CALLBACKS = UrlRules("callback", "callback_url", ("http", "https"), "VAD_CALLBACK_ALLOWLIST",
                     "VAD_CALLBACK_ALLOW_PRIVATE", CallbackRefused)
SOURCES = UrlRules("source", "source", ("https",), "VAD_SOURCE_ALLOWLIST", "VAD_SOURCE_ALLOW_PRIVATE", SourceRefused)
STREAMS = UrlRules("stream", "the stream URL", STREAM_SCHEMES, "VAD_STREAM_ALLOWLIST", None, StreamRefused,
                   MappingProxyType({"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}))

MAX_SOURCE_CHARS = 2048
MAX_URL_CHARS = 2048
"""The longest stream URL."""
MAX_REDIRECTS = 5
"""Redirects a source fetch follows, each one checked like the first URL."""


# --- callbacks --------------------------------------------------------------------------------------------------


def resolve_callback(url: str, allowlist: Sequence[str], allow_private: bool = False) -> Target:
    """Check the callback ``url`` and pin the addresses it was checked at (:func:`vad.net.policy.check_url`).

    Raises:
        CallbackRefused: The URL, its host or one of its addresses is not allowed, or the host does not resolve.
    """
    return check_url(url, CALLBACKS, allowlist, allow_private)


def check_callback_url(url: str, allowlist: Sequence[str], allow_private: bool = False, resolve: bool = True) -> str:
    """Return ``url`` if callbacks may be sent to it, else raise :class:`CallbackRefused`.

    With ``resolve=False`` the host name is not resolved (an address in the URL is checked all the same); the sender
    checks the addresses with :func:`resolve_callback` just before it connects.
    """
    check_url(url, CALLBACKS, allowlist, allow_private, resolve_host if resolve else None)
    return url


# --- video sources ----------------------------------------------------------------------------------------------


def sources_enabled(settings: QueueSettings) -> bool:
    """Whether this deployment accepts sources at all (an allow-list of hosts or buckets is set)."""
    return bool(settings.source_allowlist or settings.source_buckets)


def check_s3_source(url: str, buckets: list[str]) -> tuple[str, str]:
    """``(bucket, key)`` of an ``s3://`` source whose bucket and key a pattern of ``buckets`` allows.

    A pattern is a bucket (any key in it) or ``bucket/prefix*`` (glob, matched against ``bucket/key``).
    """
    bucket, _, key = url[len("s3://"):].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise SourceRefused(f"an s3 source names one object, s3://bucket/key; not {redact_url(url)!r}")
    allowed = any(fnmatch.fnmatchcase(f"{bucket}/{key}", pattern if "/" in pattern else f"{pattern}/*")
                  for pattern in buckets)
    if not allowed:
        raise SourceRefused(f"source bucket {bucket!r} (key {key!r}) is not in the allow-list (VAD_SOURCE_BUCKETS)")
    return bucket, key


def resolve_source(url: str, settings: QueueSettings) -> Target:
    """Check an ``https://`` source (or a redirect's target) and pin the addresses its host resolved to."""
    return check_url(url, SOURCES, settings.source_allowlist, settings.source_allow_private)


def check_source(url: str, settings: QueueSettings, resolve: bool = True) -> str:
    """Return ``url`` if a worker may fetch it, else raise :class:`SourceRefused` saying why.

    With ``resolve=False`` an https host name is not resolved (the fetcher resolves and checks its addresses when it
    connects).
    """
    if not sources_enabled(settings):
        raise SourceRefused("videos by URL are off on this deployment: the operator has set neither "
                            "VAD_SOURCE_ALLOWLIST (https hosts) nor VAD_SOURCE_BUCKETS (s3 buckets); upload the file")
    if len(url) > MAX_SOURCE_CHARS:
        raise SourceRefused(f"source is longer than {MAX_SOURCE_CHARS} characters")
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "s3":
        check_s3_source(url, settings.source_buckets)
    elif scheme == "https":
        check_url(url, SOURCES, settings.source_allowlist, settings.source_allow_private,
                  resolve_host if resolve else None)
    else:
        raise SourceRefused(f"source must be an https:// URL or s3://bucket/key, not {redact_url(url)[:80]!r}")
    return url


def source_name(url: str) -> str:
    """The last part of the URL's path, as a file name to show (the caller makes it safe); '' when there is none."""
    return unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])


# --- live streams -----------------------------------------------------------------------------------------------


def _check_stream_syntax(url: str) -> None:
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


def check_stream_url(url: str, allowlist: Sequence[str], resolve: Resolver = resolve_host) -> Target:
    """Check ``url`` against the stream policy; the target with the addresses it was checked at.

    A URL is accepted when its scheme is one of :data:`STREAM_SCHEMES` and its host is allowed: the host name itself
    matches a name entry of ``allowlist`` (``cam1.site``, ``*.cams.example.com``), or every address it resolves to
    lies inside a CIDR (or equals an address) of ``allowlist``. Cloud metadata addresses are refused whatever the
    list says. An empty allow-list accepts nothing: streams are off.

    Raises:
        StreamRefused: Streams are off, or the URL, its host or one of its addresses is not allowed; the message
            never contains the URL's credentials.
    """
    if not allowlist:
        raise StreamRefused("live streams are disabled on this deployment: the operator has not set "
                            "VAD_STREAM_ALLOWLIST (the hosts and networks streams may reach)")
    _check_stream_syntax(url)
    return check_url(url, STREAMS, allowlist, resolver=resolve)


def connect_url(target: Target) -> str:
    """The URL a stream reader opens: with the checked address in place of a host name the allow-list names not.

    A name allowed only because it resolved inside a listed network could resolve elsewhere when the reader
    connects (DNS rebinding), so the reader is given the address that was checked; a name on the list is the
    operator's to trust and is kept (TLS and HTTP virtual hosts need it).
    """
    if target.named or not target.addresses or target.host == target.addresses[0]:
        return target.url
    parts = urlsplit(target.url)
    address = target.addresses[0]
    host = f"[{address}]" if ":" in address else address
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if "@" in parts.netloc else "") + host + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def display_name(name: str | None, target: Target) -> str:
    """The stream's name as shown: the one given (a URL in it is redacted too) or the URL's host and path."""
    if name and name.strip():
        return redact_url(name.strip())[:100]
    parts = urlsplit(target.display_url)
    return f"{target.host}{parts.path}"[:100]
