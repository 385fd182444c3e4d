"""The worker side failing under a running job, with real processes (see ``conftest.py``): the supervisor of
`vad worker` killed with SIGKILL, and Redis restarted in the middle of an analysis."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Service, redis_server, running_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from workers.synthetic import make_video

    path = tmp_path_factory.mktemp("videos") / "two_minutes.mp4"
    make_video(path, duration_s=120, fps=30, size=(160, 120), seed=5)  # several seconds of analysis
    return path


def _bundle() -> Any:  # a model.bundle.Bundle, imported lazily like the other e2e tests
    from tests.conftest import tiny_bundle

    return tiny_bundle("ucf", seed=1)


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_started(service: Service, job_id: str, timeout_s: float = 120) -> dict:
    """The job once a worker runs it and has reported progress past decoding's start."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = httpx.get(f"{service.url}/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] == "started":
            return job
        assert job["status"] == "queued", job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not start within {timeout_s}s")


def _stats(service: Service) -> dict[str, float]:
    raw = service.conn.hgetall(f"{service.env['VAD_KEY_PREFIX']}stats")
    return {k.decode(): float(v) for k, v in raw.items() if k.decode().startswith("jobs_")}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_killed_supervisor_takes_its_worker_processes_along(tmp_path: Path, video: Path) -> None:
    with running_service(tmp_path, _bundle()) as service:
        job_id = service.upload(video).json()["id"]
        _wait_started(service, job_id)
        pids = service.worker_pids()
        assert len(pids) == 1 and _alive(pids[0])

        os.kill(service.worker.pid, signal.SIGKILL)  # the supervisor: no chance to stop its children
        service.worker.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _alive(pids[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        orphaned = _alive(pids[0])
        if orphaned:
            os.kill(pids[0], signal.SIGKILL)  # never leave it running after the test
        assert not orphaned, "the worker process outlived its supervisor by 5 s (an orphan)"
        assert httpx.get(f"{service.url}/v1/jobs/{job_id}").json()["status"] == "started"  # nobody finished it

        service.start_worker(tmp_path / "worker-2.log")  # a restarted `vad worker` picks the queue up
        job = service.wait(job_id, timeout_s=240)
        assert job["status"] == "finished" and job["attempts"] == 2, job
        assert httpx.get(f"{service.url}/v1/jobs/{job_id}/result").status_code == 200
        assert _stats(service) == {"jobs_finished": 1.0}


def test_redis_restarted_mid_analysis(tmp_path: Path, video: Path) -> None:
    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis") as redis, \
            running_service(tmp_path, _bundle(), redis_url=redis.url) as service:
        job_id = service.upload(video).json()["id"]
        _wait_started(service, job_id)
        workers = service.worker_pids()
        key = f"{service.env['VAD_KEY_PREFIX']}job:{job_id}"
        before = service.conn.hget(key, "attempts")  # 1, or 2 when a loaded machine let a heartbeat lapse already
        redis.stop(signal.SIGTERM)  # a restart: clean shutdown (AOF flushed), then up again on the same port
        time.sleep(float(service.env["VAD_HEARTBEAT_TTL_S"]) + 1)  # down past the heartbeat TTL of the job
        redis.start()
        record = service.conn.hgetall(key)  # the AOF kept the record through the restart, mid-analysis
        # The heartbeat expired while Redis was down, so the job may already be taken again by the time we read it.
        assert record[b"status"] in (b'"started"', b'"queued"'), record
        assert int(record[b"attempts"]) - int(before) in (0, 1), (before, record)

        job = service.wait(job_id, timeout_s=300)
        assert job["status"] in ("finished", "failed"), job
        max_attempts = int(service.env["VAD_MAX_RETRIES"]) + 1
        assert 1 <= job["attempts"] <= max_attempts, job
        result = httpx.get(f"{service.url}/v1/jobs/{job_id}/result")
        if job["status"] == "finished":
            assert result.status_code == 200 and result.json()["video"]["frames"] == 3600
        else:
            assert job["error"] and "Traceback" not in job["error"] and result.status_code == 409, job
        assert _stats(service) == {f"jobs_{job['status']}": 1.0}  # one outcome, counted once
        time.sleep(6)  # a second run of the same job (a duplicate) would show within the heartbeat TTL
        assert httpx.get(f"{service.url}/v1/jobs/{job_id}").json() == job
        assert _stats(service) == {f"jobs_{job['status']}": 1.0}

        again = service.upload(video, threshold=0.25).json()["id"]  # the worker still serves jobs
        assert service.wait(again, timeout_s=240)["status"] == "finished"
        assert service.worker.poll() is None
        assert service.worker_pids() == workers  # the same process, models still loaded: it waited for Redis
