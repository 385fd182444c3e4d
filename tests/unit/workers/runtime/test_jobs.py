"""Job functions' pieces: failure reasons, progress/cancellation, the failure callback, completion callbacks."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest

from vad.exceptions import CallbackRefused
from vad.jobstate import FAILURE_CALLBACK, JOB_FUNCTION, JobRecord, JobStatus
from vad.net.rules import check_callback_url
from workers.exceptions import VideoError
from workers.runtime.jobs import failure_reason
from workers.runtime.notify import send_callback
from workers.settings import WorkerSettings


def test_failure_reasons_are_readable() -> None:
    job = SimpleNamespace(timeout=60)
    abandoned = type("AbandonedJobError", (Exception,), {})
    timeout = type("JobTimeoutException", (Exception,), {})
    assert "stopped unexpectedly" in failure_reason(abandoned, abandoned(), job)
    assert "60 s" in failure_reason(timeout, timeout(), job)
    err = VideoError("/x/video", "no video stream")
    assert failure_reason(VideoError, err, job) == str(err)
    assert failure_reason(RuntimeError, RuntimeError("CUDA out of memory"), job) == "RuntimeError: CUDA out of memory"


def test_callback_policy() -> None:
    allow = ["hooks.example.com", "*.corp.example"]
    with pytest.raises(CallbackRefused, match="http"):
        check_callback_url("file:///etc/passwd", allow, resolve=False)
    with pytest.raises(CallbackRefused, match="allow-list"):
        check_callback_url("https://evil.example.org/h", allow, resolve=False)
    assert check_callback_url("https://a.corp.example/h", allow, resolve=False)
    with pytest.raises(CallbackRefused, match="internal"):
        check_callback_url("http://localhost:9/h", ["localhost"])
    assert check_callback_url("http://localhost:9/h", ["localhost"], allow_private=True)
    with pytest.raises(CallbackRefused, match="does not resolve"):
        check_callback_url("http://no-such-host.invalid/h", ["*.invalid"])


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        _Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(302 if self.path == "/redirect" else 204)
        self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_send_callback(tmp_path: Path) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    settings = WorkerSettings(callback_allowlist=["127.0.0.1"], callback_allow_private=True)
    record = JobRecord(id="j", status=JobStatus.finished, sha256="ab", callback_url=f"http://127.0.0.1:{port}/hook")
    try:
        assert send_callback(record, settings) is True
        assert _Hook.received[-1] == {"job_id": "j", "status": "finished", "error": None, "sha256": "ab",
                                      "filename": "video"}
        record.callback_url = f"http://127.0.0.1:{port}/redirect"
        assert send_callback(record, settings) is False  # redirects are not followed
        record.callback_url = "http://127.0.0.1:9/closed"
        assert send_callback(record, settings.model_copy(update={"callback_retries": 0})) is False  # logged
        strict = WorkerSettings(callback_allowlist=["127.0.0.1"])
        record.callback_url = f"http://127.0.0.1:{port}/hook"
        count = len(_Hook.received)
        assert send_callback(record, strict) is False and len(_Hook.received) == count  # private address refused
    finally:
        server.shutdown()


@pytest.mark.parametrize("path", [JOB_FUNCTION, FAILURE_CALLBACK, "workers.jobs.analyze_job",
                                  "workers.queue.jobs.analyze_job", "workers.queue.jobs.on_job_failure"])
def test_every_path_a_queued_job_may_name_runs_the_job_functions(path: str) -> None:
    """The API's names, 0.1's (``workers.jobs``) and the 0.2 development builds' (``workers.queue.jobs``) resolve,
    the way RQ resolves a queued job's function, to the functions of :mod:`workers.runtime.jobs`."""
    from rq.utils import import_attribute

    import workers.runtime.jobs as jobs

    name = path.rsplit(".", 1)[1]
    assert import_attribute(path) is getattr(jobs, name)


def test_the_api_enqueues_a_stable_name_not_the_implementation() -> None:
    assert JOB_FUNCTION == "workers.jobs.analyze_job" and FAILURE_CALLBACK == "workers.jobs.on_job_failure"
