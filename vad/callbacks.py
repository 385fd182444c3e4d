"""Callback URL policy and webhook signatures, shared by the API (at submission) and the workers (when sending).

Only http(s) URLs whose host is on an allow-list are accepted, and by default none that resolves
to a private, loopback, link-local or otherwise internal address (no requests into the
deployment's own network on a client's behalf). :func:`resolve_callback` returns the addresses it
checked, and the sender connects to those and nothing else: resolving the name a second time would
let a DNS answer that changed in between (DNS rebinding) lead past the check.

Every callback body is signed (:func:`sign`) with HMAC-SHA256 over ``"<t>." + body``, in the
:data:`SIGNATURE_HEADER` header ``t=<unix seconds>,v1=<hex digest>``; receivers check it with
:func:`verify_signature`, which needs only the standard library so that it can be copied as it is.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from vad.exceptions import CallbackRefused

SIGNATURE_HEADER = "X-VAD-Signature"
"""The header carrying ``t=<unix seconds>,v1=<hex hmac_sha256(secret, f"{t}.".encode() + body)>``."""

DEFAULT_TOLERANCE_S = 300.0
"""How old (or how far in the future) a signature's timestamp may be before a receiver should refuse it."""


@dataclass(frozen=True)
class CallbackTarget:
    """A callback URL that passed the policy, with the addresses its host resolved to when it was checked.

    Attributes:
        url: The URL as given.
        scheme: ``http`` or ``https``.
        host: The host name, lowercased: the ``Host`` header and, for https, the name the certificate must carry.
        port: The port (80/443 when the URL gives none).
        target: Path and query to request (``/`` when the URL has no path).
        addresses: The checked IP addresses, in resolver order; the only ones a sender may connect to.
    """

    url: str
    scheme: str
    host: str
    port: int
    target: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class UrlPolicy:
    """How one kind of URL is checked and named in messages: callbacks here, video sources in :mod:`vad.sources`."""

    what: str
    field: str
    schemes: tuple[str, ...]
    allowlist_setting: str
    private_setting: str
    refused: type[ValueError]


CALLBACKS = UrlPolicy("callback", "callback_url", ("http", "https"), "VAD_CALLBACK_ALLOWLIST",
                      "VAD_CALLBACK_ALLOW_PRIVATE", CallbackRefused)


def _is_internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global or ip.is_multicast


def _allowed_host(url: str, allowlist: Sequence[str], policy: UrlPolicy = CALLBACKS) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    if parts.scheme not in policy.schemes or not parts.hostname:
        schemes = "(s)".join(policy.schemes) if policy.schemes == ("http", "https") else "/".join(policy.schemes)
        raise policy.refused(f"{policy.field} must be an {schemes} URL with a host")
    host = parts.hostname.lower()
    if not any(fnmatch.fnmatch(host, pattern.lower()) for pattern in allowlist):
        raise policy.refused(f"{policy.what} host {host!r} is not in the allow-list ({policy.allowlist_setting})")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise policy.refused(f"{policy.field} has an invalid port: {exc}") from exc
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port, target


def _resolve(host: str, port: int, allow_private: bool, policy: UrlPolicy = CALLBACKS) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise policy.refused(f"{policy.what} host {host!r} does not resolve") from exc
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)))
    if not addresses:
        raise policy.refused(f"{policy.what} host {host!r} has no IPv4 or IPv6 address")
    internal = sorted(a for a in addresses if _is_internal(a))
    if internal and not allow_private:
        raise policy.refused(f"{policy.what} host {host!r} resolves to internal address(es) {', '.join(internal)}; "
                             f"set {policy.private_setting}=true to allow it")
    return addresses


def resolve_url(url: str, allowlist: Sequence[str], allow_private: bool = False,
                policy: UrlPolicy = CALLBACKS) -> CallbackTarget:
    """Check ``url`` against ``policy`` and pin the addresses it was checked at.

    The host is resolved once; every address must pass the policy, and a client connects only to
    :attr:`CallbackTarget.addresses` (never to a second resolution of the name).

    Raises:
        ValueError: ``policy.refused``: the URL, its host or one of its addresses is not allowed, or the host does
            not resolve.
    """
    scheme, host, port, target = _allowed_host(url, allowlist, policy)
    return CallbackTarget(url, scheme, host, port, target, _resolve(host, port, allow_private, policy))


def resolve_callback(url: str, allowlist: Sequence[str], allow_private: bool = False) -> CallbackTarget:
    """Check the callback ``url`` against the policy and pin the addresses it was checked at (:func:`resolve_url`).

    Raises:
        CallbackRefused: The URL, its host or one of its addresses is not allowed, or the host does not resolve.
    """
    return resolve_url(url, allowlist, allow_private, CALLBACKS)


def check_callback_url(url: str, allowlist: Sequence[str], allow_private: bool = False, resolve: bool = True) -> str:
    """Return ``url`` if callbacks may be sent to it, else raise :class:`CallbackRefused`.

    With ``resolve=False`` (or ``allow_private``) only the scheme and the allow-list are checked; the
    sender checks the addresses again with :func:`resolve_callback` just before it connects.
    """
    _, host, port, _ = _allowed_host(url, allowlist)
    if resolve and not allow_private:
        _resolve(host, port, allow_private)
    return url


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The :data:`SIGNATURE_HEADER` value of ``body``: ``t=<unix seconds>,v1=<hex HMAC-SHA256>``.

    Args:
        secret: The shared secret (``VAD_CALLBACK_SECRET``).
        body: The exact bytes sent as the request body.
        timestamp: Unix seconds to sign (default: now).
    """
    t = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify_signature(secret: str, header: str, body: bytes, tolerance_s: float = DEFAULT_TOLERANCE_S,
                     now: float | None = None) -> bool:
    """Whether ``header`` (the :data:`SIGNATURE_HEADER` value) signs ``body`` with ``secret`` within ``tolerance_s``.

    Standard library only, so a receiver can copy it. Use the raw request body (not re-serialised JSON);
    the timestamp bounds replays of an old delivery. Several ``v1=`` entries are accepted (any may match).
    """
    fields = [part.strip().partition("=") for part in header.split(",")]
    stamps = [value for key, _, value in fields if key == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    if abs((time.time() if now is None else now) - int(stamps[0])) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{stamps[0]}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, value) for key, _, value in fields if key == "v1")
