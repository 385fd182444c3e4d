"""The deployed service with real parts: Redis, `vad worker` as a subprocess, uvicorn serving the API.

A reduced-width model with a tiny random CLIP stands in for the real weights; the videos are
generated. Each test session uses its own queue and key prefix on the machine's Redis.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from vad.stack import free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class Service:
    url: str
    env: dict[str, str]
    worker: subprocess.Popen
    conn: redis.Redis
    queue: str
    bundle: Path

    def upload(self, path: Path, **fields: object) -> httpx.Response:
        with open(path, "rb") as f:
            return httpx.post(f"{self.url}/v1/videos", files={"file": (path.name, f)},
                              data={k: str(v) for k, v in fields.items()}, timeout=30)

    def wait(self, job_id: str, timeout_s: float = 120) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = httpx.get(f"{self.url}/v1/jobs/{job_id}", timeout=10).json()
            if job["status"] in ("finished", "failed", "canceled"):
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not end within {timeout_s}s: {job}")

    def worker_pids(self) -> list[int]:
        from rq import Queue, Worker

        return [w.pid for w in Worker.all(queue=Queue(self.queue, connection=self.conn)) if w.pid]


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[Service]:
    from model.bundle import save_bundle
    from tests.conftest import tiny_bundle

    conn = redis.Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    root = tmp_path_factory.mktemp("service")
    bundle = root / "tiny.safetensors"
    save_bundle(tiny_bundle("ucf", seed=1), bundle)
    tag = secrets.token_hex(4)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VAD_REDIS_URL": REDIS_URL, "VAD_BUNDLE": str(bundle),
           "VAD_DEVICE": "cpu", "VAD_QUEUE_NAME": f"e2e-{tag}", "VAD_KEY_PREFIX": f"e2e-{tag}:",
           "VAD_STORAGE_DIR": str(root / "uploads"), "VAD_HEARTBEAT_INTERVAL_S": "1", "VAD_HEARTBEAT_TTL_S": "4",
           "VAD_MAX_RETRIES": "2"}
    port = free_port()
    worker = _start([sys.executable, "-m", "vad", "worker"], env, root / "worker.log")
    api = _start([sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory", "--port", str(port)],
                 env, root / "api.log")
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 120, "the API with a live worker", api)
        yield Service(url, env, worker, conn, f"e2e-{tag}", bundle)
    finally:
        for process in (api, worker):
            process.send_signal(signal.SIGTERM)
        for process in (api, worker):
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
        keys = [*conn.scan_iter(f"e2e-{tag}:*"), *conn.scan_iter(f"*e2e-{tag}*")]
        if keys:
            conn.delete(*keys)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    from workers.testing import make_video

    root = tmp_path_factory.mktemp("videos")
    make_video(root / "short.mp4", duration_s=6, fps=25, size=(96, 64), seed=1)
    make_video(root / "long.mp4", duration_s=150, fps=30, size=(160, 120), seed=2)
    data = (root / "short.mp4").read_bytes()
    (root / "corrupt.mp4").write_bytes(data[:64] + os.urandom(20_000))  # an MP4 header, then garbage
    return {p.stem: p for p in root.iterdir()}


def test_upload_poll_and_result_equal_vad_analyze(service: Service, videos: dict[str, Path]) -> None:
    response = service.upload(videos["short"], threshold=0.3, frame_scores="true")
    assert response.status_code == 202, response.text
    job = service.wait(response.json()["id"])
    assert job["status"] == "finished" and job["attempts"] == 1 and job["progress"] == {"stage": "done",
                                                                                          "percent": 100.0}
    result = httpx.get(f"{service.url}/v1/jobs/{job['id']}/result").json()
    local = subprocess.run([sys.executable, "-m", "vad", "analyze", str(videos["short"]), "--bundle",
                            str(service.bundle), "--threshold", "0.3", "--frame-scores", "-q"],
                           env=service.env, capture_output=True, text=True, check=True)
    import json

    expected = json.loads(local.stdout)
    assert result["video"]["frames"] == expected["video"]["frames"] == 150
    assert result["video"]["sha256"] == expected["video"]["sha256"]
    np.testing.assert_allclose(result["timeline"]["score"], expected["timeline"]["score"], atol=1e-6)
    np.testing.assert_allclose(result["timeline"]["class_probs"], expected["timeline"]["class_probs"], atol=1e-6)
    assert len(result["frame_scores"]) == 150
    assert result["events"] == expected["events"]
    assert result["model"]["bundle_sha256"] == expected["model"]["bundle_sha256"]


def test_same_upload_returns_the_first_job(service: Service, videos: dict[str, Path]) -> None:
    first = service.upload(videos["short"], threshold=0.45)
    second = service.upload(videos["short"], threshold=0.45)
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json()["id"] == first.json()["id"]
    service.wait(first.json()["id"])


def test_corrupt_upload_fails_with_a_reason_and_is_not_retried(service: Service, videos: dict[str, Path]) -> None:
    response = service.upload(videos["corrupt"])
    assert response.status_code == 202  # it looks like an MP4; only decoding can tell
    job = service.wait(response.json()["id"])
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"] and "Traceback" not in job["error"]
    result = httpx.get(f"{service.url}/v1/jobs/{job['id']}/result")
    assert result.status_code == 409 and job["error"] in result.json()["detail"]


def test_killed_worker_job_is_retried_and_finishes(service: Service, videos: dict[str, Path]) -> None:
    job_id = service.upload(videos["long"]).json()["id"]
    deadline = time.monotonic() + 120
    while httpx.get(f"{service.url}/v1/jobs/{job_id}").json()["status"] != "started":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.02)
    pids = service.worker_pids()
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)  # the worker process, not the supervisor
    job = service.wait(job_id, timeout_s=180)
    assert job["status"] == "finished", job
    assert job["attempts"] == 2
    assert service.worker_pids() and service.worker_pids()[0] != pids[0]  # the supervisor replaced it
    assert service.worker.poll() is None


def test_delete_removes_the_job_and_its_upload(service: Service, videos: dict[str, Path]) -> None:
    job_id = service.upload(videos["short"], threshold=0.2).json()["id"]
    service.wait(job_id)
    assert httpx.delete(f"{service.url}/v1/jobs/{job_id}").status_code == 204
    assert httpx.get(f"{service.url}/v1/jobs/{job_id}").status_code == 404
    assert not (Path(service.env["VAD_STORAGE_DIR"]) / job_id).exists()


def test_metrics_count_jobs(service: Service) -> None:
    text = httpx.get(f"{service.url}/metrics").text
    assert 'vad_jobs_total{outcome="finished"}' in text and "vad_stage_seconds_total" in text
