"""What a message may show: URLs without credentials, text without the server's paths (one place for both).

A camera's URL often carries its password (``rtsp://admin:secret@10.0.0.7/stream1``) or a token in its query
(``https://cdn/live.m3u8?token=…``), a presigned source URL its signature. Logs, statuses, errors and the API show
:func:`redact_url`'s form only, and :func:`redact_text` strips the credentials of any URL quoted in a message (an
FFmpeg error, say).

Messages a user reads (a job's error, a result's warnings) carry no absolute path of the server either. Decoders
quote the file they were given (the stored upload, ``<storage>/<job id>/video``) and sometimes the source paths of
their own build (``/github/workspace/src/video/video_reader.cc:486``); Python's errors quote paths too.
:func:`scrub_paths` names the paths it is told about as the user knows them (the upload by its file name) and
shortens every other absolute path to its last part.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"
"""What replaces a secret."""

SECRET_QUERY_KEYS = frozenset({
    "password", "passwd", "pass", "pwd", "secret", "token", "access_token", "auth", "authorization", "key",
    "api_key", "apikey", "sig", "signature", "credential", "credentials", "user", "username", "login", "passphrase",
})
"""Query parameters whose values are replaced (matched case-insensitively; ``X-Amz-Signature`` style names too)."""

_SECRET_SUFFIXES = ("signature", "token", "credential", "password", "secret")
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#@]*@)")
_USERINFO_ANYWHERE = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#@\s'\"]*@)")


def _secret_key(key: str) -> bool:
    lower = key.lower()
    return lower in SECRET_QUERY_KEYS or lower.endswith(_SECRET_SUFFIXES)


def redact_url(url: str) -> str:
    """``url`` without its user name and password, and with secret-looking query values replaced.

    >>> redact_url("rtsp://admin:hunter2@10.0.0.7:554/stream1?channel=1&password=x")
    'rtsp://***@10.0.0.7:554/stream1?channel=1&password=***'

    A local path (no scheme) is returned unchanged. Text that is not a parseable URL loses everything between
    ``://`` and the last ``@`` before the path, so a malformed URL does not leak its password either.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, REDACTED if _secret_key(k) else v) for k, v in pairs], safe="*/:,")
        return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # e.g. an invalid port or IPv6 literal: keep only what surely holds no secret
        return _USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", url)


def redact_text(text: str, url: str | None = None) -> str:
    """``text`` (e.g. an FFmpeg error) with ``url`` shown as :func:`redact_url` shows it, and the user name and
    password of any other URL in it removed."""
    if url:
        text = text.replace(url, redact_url(url))
    return _USERINFO_ANYWHERE.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


def url_scheme(url: str) -> str:
    """The URL's scheme in lower case (``rtsp``, ``https``…), ``file`` for a local path."""
    if "://" not in url:
        return "file"
    return url.split("://", 1)[0].lower()


# --- server paths ---------------------------------------------------------------------------------------------

_PART = r"[^\s/'\"`:;,()\[\]{}<>]+"
ABSOLUTE_PATH = re.compile(rf"(?<![\w.:/~-])(?:/{_PART}){{2,}}/?")
"""An absolute POSIX path of two parts or more, not inside a URL or a relative path; a colon ends it
(``video_reader.cc:486``)."""


def scrub_paths(text: str, known: Mapping[str | Path, str] | None = None) -> str:
    """``text`` with the paths in ``known`` replaced by their names, then any other absolute path by its last part.

    Args:
        text: A message meant for a user.
        known: Paths to name in a particular way, e.g. ``{upload path: "holiday.mp4"}``; the longest match wins.

    Returns:
        The message without absolute paths of this machine.
    """
    for path, name in sorted((known or {}).items(), key=lambda item: -len(str(item[0]))):
        if str(path) not in ("", "."):  # a record without a path (Path("") is ".") names nothing
            text = text.replace(str(path), name)
    return ABSOLUTE_PATH.sub(lambda match: match.group().rstrip("/").rsplit("/", 1)[-1], text)
