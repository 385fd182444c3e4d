"""Completion callbacks: one signed POST per ended job, retried on server errors, never fatal to the job.

The URL is checked against the policy (:mod:`vad.net.rules`) again just before sending (DNS may have changed
since the upload was accepted), and the request goes to the addresses that check resolved, never to a second
resolution of the name (:mod:`vad.net.pinned`): the connection is opened to the checked IP, while the ``Host``
header, TLS SNI and the certificate check use the host name. Redirects are not followed (one could lead past
the allow-list).

A 2xx answer delivers the callback. A 5xx answer, a timeout or a connection error is retried up to
``callback_retries`` times, waiting ``callback_backoff_s``, then twice as long each time; any other answer
(3xx, 4xx) or a certificate error is final. The callback runs in the worker after the job's result is
stored, so its worst case (attempts × timeout + the waits) only delays the worker's next job.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import time

from vad.callbacks import SIGNATURE_HEADER, sign
from vad.exceptions import CallbackRefused
from vad.jobstate import JobRecord
from vad.net.pinned import pinned_connection
from vad.net.policy import Target
from vad.net.rules import resolve_callback
from vad.settings import QueueSettings

log = logging.getLogger(__name__)
_unsigned_warned = False


def post(target: Target, body: bytes, headers: dict[str, str], timeout: float,
         context: ssl.SSLContext | None = None) -> int:
    """POST ``body`` to ``target`` over a connection to its checked addresses; the answer's status code.

    Raises:
        OSError, http.client.HTTPException: The connection failed, timed out or the answer was not HTTP.
    """
    connection = pinned_connection(target, timeout, context)
    try:
        connection.request("POST", target.target, body=body, headers=headers)
        response = connection.getresponse()
        response.read(64 * 1024)  # the receiver's answer body is not used; read a little so it can finish cleanly
        return response.status
    finally:
        connection.close()


def _payload(record: JobRecord) -> bytes:
    return json.dumps({"job_id": record.id, "status": record.status.value, "error": record.error,
                       "sha256": record.sha256, "filename": record.filename}).encode()


def _headers(body: bytes, secret: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "dsanet-vad"}
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(secret, body)  # signed again at each attempt: a fresh timestamp
    return headers


def _secret(settings: QueueSettings) -> str | None:
    global _unsigned_warned
    if settings.callback_secret is not None:
        return settings.callback_secret.get_secret_value()
    if not _unsigned_warned:
        _unsigned_warned = True
        log.warning("VAD_CALLBACK_SECRET is not set: callbacks are sent unsigned, so receivers cannot tell them "
                    "from forged ones; set it to a random string of at least 16 characters")
    return None


def send_callback(record: JobRecord, settings: QueueSettings) -> bool:
    """POST ``{job_id, status, error, sha256, filename}`` to the job's callback URL; ``True`` once it was accepted.

    Never raises for network trouble or a refused URL: those are logged.
    """
    if not record.callback_url:
        return False
    return deliver(record.callback_url, _payload(record), settings, f"job {record.id}")


def deliver(url: str, body: bytes, settings: QueueSettings, what: str) -> bool:
    """POST ``body`` (JSON) to ``url``, signed, checked against the policy and retried as above; ``True`` once a 2xx
    answered. ``what`` names the sender in the log (``job <id>``, ``stream <id>``). Never raises for network trouble
    or a refused URL: those are logged.
    """
    try:
        target = resolve_callback(url, settings.callback_allowlist, settings.callback_allow_private)
    except CallbackRefused as exc:
        log.warning("callback of %s not sent: %s", what, exc)
        return False
    secret = _secret(settings)
    attempts = settings.callback_retries + 1
    for attempt in range(1, attempts + 1):
        try:
            status = post(target, body, _headers(body, secret), settings.callback_timeout_s)
        except ssl.SSLCertVerificationError as exc:
            log.warning("callback of %s to %s not sent: certificate refused (%s)", what, target.display_url, exc)
            return False
        except (OSError, http.client.HTTPException) as exc:
            outcome, retry = f"failed ({type(exc).__name__}: {exc})", True
        else:
            if 200 <= status < 300:
                return True
            outcome, retry = f"answered {status}", status >= 500
        if not retry or attempt == attempts:
            log.warning("callback of %s to %s %s (attempt %d of %d); giving up", what, target.display_url, outcome,
                        attempt, attempts)
            return False
        delay = settings.callback_backoff_s * 2 ** (attempt - 1)
        log.info("callback of %s to %s %s; retrying in %.1f s", what, target.display_url, outcome, delay)
        time.sleep(delay)
    return False
