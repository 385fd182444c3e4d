"""Schemathesis against the running API (uvicorn, a real `vad worker`, Redis): every check, a bounded number of
examples per operation, without and with API keys, and a real finished job for ``{job_id}``. 0 failures. And, as a
newcomer would run it, without our hooks or parameters, on the default deployment (streams off) and with streams on:
nothing but the upload's 415 for a ``file`` that is not a video (with streams on, the stateful phase creates streams,
stops and deletes them: a deleted stream must be gone, ST301).

What each run did (operations, test cases, failures) is printed; ``-s`` shows it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import answers
from tests.e2e.conftest import Service
from vad.cli.stack import free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MAX_EXAMPLES = 30
KEY = "st-key-1"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    from workers.synthetic import make_video

    path = tmp_path_factory.mktemp("st-video") / "clip.mp4"
    make_video(path, duration_s=2, fps=16, size=(64, 48), seed=3)
    return path


@contextmanager
def second_api(service: Service, log: Path, **env: str) -> Iterator[str]:
    """Another API on the same queue and worker as ``service``, with ``env`` added."""
    port = free_port()
    api = subprocess.Popen([sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory", "--host",
                            "127.0.0.1", "--port", str(port)], env={**service.env, **env},
                           stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    try:
        wait_for(lambda: answers(url, "/healthz"), 60, "the second API", api)
        yield url
    finally:
        api.send_signal(signal.SIGTERM)
        try:
            api.wait(timeout=30)
        except subprocess.TimeoutExpired:
            api.kill()


@pytest.fixture(scope="module")
def keyed_url(service: Service, tmp_path_factory) -> Iterator[str]:
    """A second API on the same queue and worker, with ``VAD_API_KEYS`` set."""
    with second_api(service, tmp_path_factory.mktemp("st-keyed") / "api.log", VAD_API_KEYS=f"{KEY},other") as url:
        yield url


def finished_jobs(url: str, video: Path, headers: dict[str, str]) -> list[str]:
    """Two finished jobs of ``video`` (one for DELETE to remove, one for the reads)."""
    ids = []
    for threshold in (0.3, 0.7):
        with open(video, "rb") as f:
            response = httpx.post(f"{url}/v1/videos", files={"file": (video.name, f)}, data={"threshold": threshold},
                                  headers=headers, timeout=30)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    for job_id in ids:
        assert _wait(url, job_id, headers)["status"] == "finished"
    return ids


def _wait(url: str, job_id: str, headers: dict[str, str]) -> dict:
    job: dict = {}

    def ended() -> bool:
        nonlocal job
        job = httpx.get(f"{url}/v1/jobs/{job_id}", headers=headers, timeout=10).json()
        return job["status"] in ("finished", "failed", "canceled")

    wait_for(ended, 120, f"job {job_id}")
    return job


def queued_streams(url: str, headers: dict[str, str]) -> list[str]:
    """Three streams (for the reads, for DELETE, for the stop); no worker runs them (VAD_STREAMS_PER_WORKER=0)."""
    ids = []
    for name in ("read", "delete", "stop"):
        response = httpx.post(f"{url}/v1/streams", json={"url": "rtsp://127.0.0.1:9/cam", "name": name},
                              headers=headers, timeout=30)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def run_schemathesis(url: str, read_job: str, delete_job: str, workdir: Path, headers: dict[str, str]) -> dict:
    """``schemathesis run`` with all checks; its JSON report."""
    read_stream, delete_stream, stop_stream = queued_streams(url, headers)
    events = httpx.get(f"{url}/v1/events", params={"job_id": read_job}, headers=headers, timeout=30).json()["events"]
    event_id = events[0]["id"] if events else "no-event"  # {event_id}: the read job's event, when it has one
    binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    assert binary, "schemathesis is not installed (pip install -e '.[dev]')"
    config = workdir / "schemathesis.toml"
    # Every {job_id} is the finished job and every {stream_id} a queued stream; DELETE and the stop get their own, so
    # the reads keep theirs. DELETE of a stream stays out of the stateful phase here: a deleted stream answers 404,
    # and schemathesis takes an id given here for one that came through a link, so a read of a stream that such a
    # DELETE removed would look like a lost resource (ST302). The run without hooks tests it statefully.
    config.write_text(
        f'[parameters]\n"path.job_id" = "{read_job}"\n"path.stream_id" = "{read_stream}"\n'
        f'"path.event_id" = "{event_id}"\n\n'
        f'[[operations]]\ninclude-name = "DELETE /v1/jobs/{{job_id}}"\n'
        f'parameters = {{ "path.job_id" = "{delete_job}" }}\n\n'
        f'[[operations]]\ninclude-name = "DELETE /v1/streams/{{stream_id}}"\n'
        f'parameters = {{ "path.stream_id" = "{delete_stream}" }}\nphases.stateful.enabled = false\n\n'
        f'[[operations]]\ninclude-name = "POST /v1/streams/{{stream_id}}/stop"\n'
        f'parameters = {{ "path.stream_id" = "{stop_stream}" }}\n')
    report = workdir / "report.json"
    command = [binary, "--config-file", str(config), "run", f"{url}/openapi.json", "--checks", "all",
               "--max-examples", str(MAX_EXAMPLES), "--workers", "1", "--seed", "1", "--generation-database", "none",
               "--request-timeout", "30", "--report", "json,har", "--report-json-path", str(report),
               "--report-har-path", str(workdir / "requests.har"), "--no-color"]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=420)
    print(done.stdout[-6000:], done.stderr[-3000:])
    assert report.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(report.read_text())
    result["statuses"] = statuses(workdir / "requests.har")
    print("schemathesis:", json.dumps({k: result[k] for k in ("operations", "test_cases", "failures", "errors")}))
    print("answers (method, route, status): count:", dict(sorted(result["statuses"].items())))
    return result


def statuses(har: Path) -> Counter[tuple[str, str, int]]:
    """How often each route answered each status in the run."""
    counts: Counter[tuple[str, str, int]] = Counter()
    for entry in json.loads(har.read_text())["log"]["entries"]:
        path = re.sub(r"^/v1/jobs/[^/]*", "/v1/jobs/{job_id}", urlsplit(entry["request"]["url"]).path)
        path = re.sub(r"^/v1/streams/[^/]+", "/v1/streams/{stream_id}", path)
        path = re.sub(r"^/v1/events/[^/]+", "/v1/events/{event_id}", path)
        counts[entry["request"]["method"], path, entry["response"]["status"]] += 1
    return counts


def operation_count(url: str) -> int:
    """How many operations the API's OpenAPI document has (each must be selected and tested)."""
    paths = httpx.get(f"{url}/openapi.json", timeout=30).json()["paths"]
    return sum(1 for item in paths.values() for method in item if method in {"get", "put", "post", "delete", "patch"})


def assert_clean(result: dict, url: str) -> None:
    assert result["failures"] == [] and result["errors"] == [], (result["failures"], result["errors"])
    assert result["exit_code"] == 0
    assert result["operations"]["tested"] == result["operations"]["selected"] == operation_count(url)
    answered = result["statuses"]
    for seen in [("POST", "/v1/videos", 202), ("GET", "/v1/jobs/{job_id}", 200), ("DELETE", "/v1/jobs/{job_id}", 204),
                 ("GET", "/v1/jobs/{job_id}/result", 200), ("POST", "/v1/streams", 201),
                 ("GET", "/v1/streams/{stream_id}", 200), ("DELETE", "/v1/streams/{stream_id}", 204),
                 ("POST", "/v1/streams/{stream_id}/stop", 200),
                 ("GET", "/v1/streams/{stream_id}/events", 200), ("GET", "/v1/streams/{stream_id}/timeline", 200),
                 ("GET", "/v1/events", 200)]:
        assert answered[seen], f"the run never saw {seen}"  # schema-valid uploads and the finished job were used


def test_schemathesis_without_keys(service: Service, video: Path, tmp_path: Path) -> None:
    read_job, delete_job = finished_jobs(service.url, video, {})
    assert_clean(run_schemathesis(service.url, read_job, delete_job, tmp_path, {}), service.url)


def test_schemathesis_with_keys(service: Service, keyed_url: str, video: Path, tmp_path: Path) -> None:
    headers = {"X-API-Key": KEY}
    for bad in ("été".encode("latin-1"), "été".encode(), b"st-key-1\xe9", b"wrong"):
        response = httpx.get(f"{keyed_url}/v1/jobs/whatever", headers={"X-API-Key": bad})  # type: ignore[dict-item]
        assert response.status_code == 401 and response.json()["code"] == "unauthorized", response.text
    read_job, delete_job = finished_jobs(keyed_url, video, headers)
    result = run_schemathesis(keyed_url, read_job, delete_job, tmp_path, headers)
    assert_clean(result, keyed_url)
    assert result["statuses"]["GET", "/v1/jobs/{job_id}", 401]  # ignored_auth probed without and with a wrong key


@pytest.mark.parametrize("allowlist", ["", "127.0.0.1/32"], ids=["streams-off", "streams-on"])
def test_schemathesis_without_our_hooks_finds_only_the_uploads_415(service: Service, tmp_path: Path,
                                                                   allowlist: str) -> None:
    """No hooks, no parameters, a deployment of its own (a key prefix no other test wrote to) on the same queue and
    worker, streams off (the default) and on: schemathesis's own ``binary`` values are images and random bytes, which
    the upload rightly refuses with 415 (the schema says so in words: JSON Schema cannot state a file signature);
    nothing else may fail. With streams on, its stateful phase follows the links it infers from the document: it
    creates streams, reads, stops and deletes them, and checks that a deleted one answers 404 (ST301: ``DELETE
    /v1/streams/{id}`` used to stop the stream and keep it readable for its retention)."""
    prefix = f"st-fresh-{secrets.token_hex(4)}:"  # its own records: none of the streams the other tests made
    with second_api(service, tmp_path / "api.log", VAD_STREAM_ALLOWLIST=allowlist, VAD_KEY_PREFIX=prefix) as url:
        binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
        assert binary, "schemathesis is not installed (pip install -e '.[dev]')"
        report = tmp_path / "report.json"
        operations = operation_count(url)  # with streams off, one fewer: no POST /v1/streams
        env = {k: v for k, v in os.environ.items() if k != "SCHEMATHESIS_HOOKS"}
        done = subprocess.run([binary, "run", f"{url}/openapi.json", "--checks", "all", "--max-examples",
                               str(MAX_EXAMPLES), "--workers", "1", "--seed", "1", "--generation-database", "none",
                               "--request-timeout", "30", "--report", "json,har", "--report-json-path", str(report),
                               "--report-har-path", str(tmp_path / "requests.har"), "--no-color"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420)
    print(done.stdout[-6000:], done.stderr[-3000:])
    leftovers = list(service.conn.scan_iter(f"{prefix}*"))
    if leftovers:
        service.conn.delete(*leftovers)
    result = json.loads(report.read_text())
    found = [(f["code"], op) for f in result["failures"] for op in f["operations"]]
    assert found == [("ST202", "POST /v1/videos")] and result["errors"] == [], (found, result["errors"])
    assert result["operations"]["tested"] == result["operations"]["selected"] == operations
    assert "[415] Unsupported Media Type" in done.stdout
    answered = statuses(tmp_path / "requests.har")
    print("answers (method, route, status): count:", dict(sorted(answered.items())))
    if allowlist:  # the stateful phase did make, stop and delete streams, and read a deleted one
        for seen in [("POST", "/v1/streams", 201), ("POST", "/v1/streams/{stream_id}/stop", 200),
                     ("DELETE", "/v1/streams/{stream_id}", 204), ("GET", "/v1/streams/{stream_id}", 404)]:
            assert answered[seen], f"the run never saw {seen}"
