"""Redis going away under a running API (uvicorn): fast 503s, nothing half-written, recovery when it is back."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.unit.service.conftest import mp4_bytes
from vad.cli.stack import _tcp_open, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timing, pytest.mark.timeout(180)]


def _redis(port: int, workdir: Path) -> subprocess.Popen:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    wait_for(lambda: _tcp_open(port), 15, "redis-server", process)
    return process


def test_api_answers_503_fast_while_redis_is_down_and_recovers(tmp_path: Path) -> None:
    redis_port, api_port = free_port(), free_port()
    redis = _redis(redis_port, tmp_path)  # our own Redis: the machine's is never stopped
    env = {**os.environ, "VAD_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "VAD_STORAGE_DIR": str(tmp_path / "up"),
           "VAD_REDIS_TIMEOUT_S": "1"}
    api = subprocess.Popen([sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory", "--port",
                            str(api_port), "--log-level", "warning"], env=env)
    url = f"http://127.0.0.1:{api_port}"
    try:
        wait_for(lambda: _tcp_open(api_port), 60, "the API", api)
        job = httpx.post(f"{url}/v1/videos", files={"file": ("a.mp4", mp4_bytes())}).json()
        assert httpx.get(f"{url}/v1/jobs/{job['id']}").json()["status"] == "queued"

        redis.send_signal(signal.SIGKILL)
        redis.wait()
        start = time.monotonic()
        status = httpx.get(f"{url}/v1/jobs/{job['id']}", timeout=10)
        upload = httpx.post(f"{url}/v1/videos", files={"file": ("b.mp4", mp4_bytes(seed=3))}, timeout=10)
        ready = httpx.get(f"{url}/readyz", timeout=10)
        elapsed = time.monotonic() - start
        assert (status.status_code, upload.status_code, ready.status_code) == (503, 503, 503)
        assert "Redis" in upload.json()["detail"] and ready.json()["redis"] is False
        assert httpx.get(f"{url}/healthz").status_code == 200  # alive, just not ready
        assert elapsed < 6, f"503s took {elapsed:.1f}s"
        assert sorted(p.name for p in (tmp_path / "up").iterdir()) == [job["id"]]  # the refused upload left nothing

        redis = _redis(redis_port, tmp_path)  # back (empty: it kept nothing on disk)
        wait_for(lambda: httpx.get(f"{url}/readyz").json()["redis"] is True, 20, "the API to see Redis again")
        assert httpx.post(f"{url}/v1/videos", files={"file": ("c.mp4", mp4_bytes(seed=4))}).status_code == 202
    finally:
        api.terminate()
        api.wait(timeout=20)
        redis.kill()
        redis.wait()
