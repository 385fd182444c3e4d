"""Videos by URL: what ``POST /v1/videos`` with JSON ``{"source": ...}`` may point a worker at (torch-free).

* ``https://`` on a host of ``VAD_SOURCE_ALLOWLIST``, resolving only to public addresses (unless
  ``VAD_SOURCE_ALLOW_PRIVATE``), the same policy as callbacks (:mod:`vad.callbacks`): the fetcher connects to the
  addresses it checked, and checks every redirect again before following it.
* ``s3://bucket/key`` in a bucket (or ``bucket/prefix*`` pattern) of ``VAD_SOURCE_BUCKETS``, read with the
  storage's endpoint and credentials. Leave the uploads' own bucket off the list: a source there could name another
  client's upload.

The API checks a source when the job is created (422 when refused); the worker checks it again when it fetches.
Messages show a source as :func:`vad.urls.redact_url` does (a presigned URL's signature is a credential).
"""

from __future__ import annotations

import fnmatch
from urllib.parse import unquote, urlsplit

from vad.callbacks import CallbackTarget, UrlPolicy, _allowed_host, resolve_url
from vad.exceptions import SourceRefused
from vad.settings import QueueSettings
from vad.storage import split_s3_url
from vad.urls import redact_url

SOURCES = UrlPolicy("source", "source", ("https",), "VAD_SOURCE_ALLOWLIST", "VAD_SOURCE_ALLOW_PRIVATE",
                    SourceRefused)
MAX_SOURCE_CHARS = 2048
MAX_REDIRECTS = 5
"""Redirects a fetch follows, each one checked like the first URL."""


def sources_enabled(settings: QueueSettings) -> bool:
    """Whether this deployment accepts sources at all (an allow-list of hosts or buckets is set)."""
    return bool(settings.source_allowlist or settings.source_buckets)


def check_s3_source(url: str, buckets: list[str]) -> tuple[str, str]:
    """``(bucket, key)`` of an ``s3://`` source whose bucket and key a pattern of ``buckets`` allows.

    A pattern is a bucket (any key in it) or ``bucket/prefix*`` (glob, matched against ``bucket/key``).
    """
    bucket, key = split_s3_url(url)
    if not bucket or not key or key.endswith("/"):
        raise SourceRefused(f"an s3 source names one object, s3://bucket/key; not {redact_url(url)!r}")
    allowed = any(fnmatch.fnmatchcase(f"{bucket}/{key}", pattern if "/" in pattern else f"{pattern}/*")
                  for pattern in buckets)
    if not allowed:
        raise SourceRefused(f"source bucket {bucket!r} (key {key!r}) is not in the allow-list (VAD_SOURCE_BUCKETS)")
    return bucket, key


def resolve_source(url: str, settings: QueueSettings) -> CallbackTarget:
    """Check an ``https://`` source (or a redirect's target) and pin the addresses its host resolved to."""
    return resolve_url(url, settings.source_allowlist, settings.source_allow_private, SOURCES)


def check_source(url: str, settings: QueueSettings, resolve: bool = True) -> str:
    """Return ``url`` if a worker may fetch it, else raise :class:`SourceRefused` saying why.

    With ``resolve=False`` an https host is checked against the allow-list only (the fetcher resolves and checks
    its addresses when it connects).
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
        if resolve:
            resolve_source(url, settings)
        else:
            _allowed_host(url, settings.source_allowlist, SOURCES)
    else:
        raise SourceRefused(f"source must be an https:// URL or s3://bucket/key, not {redact_url(url)[:80]!r}")
    return url


def source_name(url: str) -> str:
    """The last part of the URL's path, as a file name to show (the caller makes it safe); '' when there is none."""
    return unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
