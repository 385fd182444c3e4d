"""Webhook signatures, shared by the workers (when sending) and receivers (when checking).

Which URLs callbacks may go to is the network policy's (:mod:`vad.net.rules`); this is the contract a receiver
relies on. Every callback body is signed (:func:`sign`) with HMAC-SHA256 over ``"<t>." + body``, in the
:data:`SIGNATURE_HEADER` header ``t=<unix seconds>,v1=<hex digest>``; receivers check it with
:func:`verify_signature`, which needs only the standard library so that it can be copied as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-VAD-Signature"
"""The header carrying ``t=<unix seconds>,v1=<hex hmac_sha256(secret, f"{t}.".encode() + body)>``."""

DEFAULT_TOLERANCE_S = 300.0
"""How old (or how far in the future) a signature's timestamp may be before a receiver should refuse it."""


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
