"""Completion callbacks: one POST per ended job, checked against the policy again, never fatal."""

from __future__ import annotations

import json
import logging
import urllib.request

from vad.callbacks import check_callback_url
from vad.exceptions import CallbackRefused
from vad.jobstate import JobRecord
from vad.settings import QueueSettings

log = logging.getLogger(__name__)
TIMEOUT_S = 10.0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect could lead past the allow-list


def send_callback(record: JobRecord, settings: QueueSettings) -> bool:
    """POST ``{job_id, status, error, sha256}`` to the job's callback URL; ``True`` when it was accepted."""
    if not record.callback_url:
        return False
    try:  # re-checked here: DNS may have changed since the upload was accepted
        url = check_callback_url(record.callback_url, settings.callback_allowlist, settings.callback_allow_private)
    except CallbackRefused as exc:
        log.warning("callback of job %s not sent: %s", record.id, exc)
        return False
    body = json.dumps({"job_id": record.id, "status": record.status.value, "error": record.error,
                       "sha256": record.sha256, "filename": record.filename}).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "dsanet-vad"})
    try:
        with urllib.request.build_opener(_NoRedirect()).open(request, timeout=TIMEOUT_S) as response:
            ok = 200 <= response.status < 300
    except OSError as exc:
        log.warning("callback of job %s to %s failed: %s", record.id, url, exc)
        return False
    if not ok:
        log.warning("callback of job %s to %s answered %s", record.id, url, response.status)
    return ok
