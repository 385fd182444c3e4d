"""A small HTTP client of the service for ``vad demo``: wait until ready, upload, poll, fetch the result.

It speaks only the public REST API (``/readyz``, ``POST /v1/videos``, ``/v1/jobs/{id}``, ``…/result``),
exactly as any user's client would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from vad.exceptions import DemoClientError
from vad.schema import AnalysisResult

FINAL = ("finished", "failed", "canceled")


class DemoClient:
    """Talks to the service at ``url``.

    Args:
        url: Base URL, e.g. ``http://127.0.0.1:8000``.
        poll_s: Seconds between polls.
    """

    def __init__(self, url: str, poll_s: float = 0.3) -> None:
        self.url = url.rstrip("/")
        self.poll_s = poll_s
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def close(self) -> None:
        self.http.close()

    def wait_ready(self, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> None:
        """Wait until ``/readyz`` says Redis, a worker and storage are ready.

        Raises:
            DemoClientError: Not ready within ``timeout_s``, or ``alive()`` turned false (a part exited).
        """
        deadline, last = time.monotonic() + timeout_s, "no answer"
        while time.monotonic() < deadline:
            if not alive():
                raise DemoClientError("a part of the local stack exited while starting; see its messages above")
            try:
                answer = self.http.get("/readyz", timeout=5)
                if answer.status_code == 200:
                    return
                last = answer.text
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(self.poll_s)
        raise DemoClientError(f"the service at {self.url} was not ready within {timeout_s:.0f}s ({last})")

    def upload(self, path: Path, **fields: Any) -> str:
        """Upload a video; returns the job id."""
        with path.open("rb") as handle:
            answer = self.http.post("/v1/videos", files={"file": (path.name, handle, "video/mp4")},
                                    data={k: str(v) for k, v in fields.items()})
        if answer.status_code != 202:
            raise DemoClientError(f"uploading {path.name} was refused ({answer.status_code}): {answer.text}")
        return str(answer.json()["id"])

    def wait(self, job_id: str, timeout_s: float) -> dict[str, Any]:
        """Poll a job until it ends; returns its final record.

        Raises:
            DemoClientError: It did not end within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.http.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in FINAL:
                return dict(job)
            if time.monotonic() > deadline:
                raise DemoClientError(f"job {job_id} did not end within {timeout_s:.0f}s (status {job['status']})")
            time.sleep(self.poll_s)

    def result(self, job_id: str) -> AnalysisResult:
        """A finished job's result."""
        answer = self.http.get(f"/v1/jobs/{job_id}/result")
        if answer.status_code != 200:
            raise DemoClientError(f"no result for job {job_id} ({answer.status_code}): {answer.text}")
        return AnalysisResult.model_validate(answer.json())
