"""Callback URL policy, shared by the API (at submission) and the workers (again, just before sending).

Only http(s) URLs whose host is on an allow-list are accepted, and by default none that resolves
to a private, loopback, link-local or otherwise internal address (no requests into the
deployment's own network on a client's behalf).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from vad.exceptions import CallbackRefused


def _is_internal(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not ip.is_global or ip.is_multicast


def check_callback_url(url: str, allowlist: Sequence[str], allow_private: bool = False, resolve: bool = True) -> str:
    """Return ``url`` if callbacks may be sent to it, else raise :class:`CallbackRefused`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackRefused("callback_url must be an http(s) URL with a host")
    host = parts.hostname.lower()
    if not any(fnmatch.fnmatch(host, pattern.lower()) for pattern in allowlist):
        raise CallbackRefused(f"callback host {host!r} is not in the allow-list (VAD_CALLBACK_ALLOWLIST)")
    if allow_private or not resolve:
        return url
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80))
    except OSError as exc:
        raise CallbackRefused(f"callback host {host!r} does not resolve") from exc
    internal = sorted({str(info[4][0]) for info in infos if _is_internal(str(info[4][0]))})
    if internal:
        raise CallbackRefused(f"callback host {host!r} resolves to internal address(es) {', '.join(internal)}; "
                              "set VAD_CALLBACK_ALLOW_PRIVATE=true to allow it")
    return url
