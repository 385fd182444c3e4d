"""The deployed service with real parts, shared by the end-to-end tests: Redis, `vad worker` as a subprocess,
uvicorn serving the API.

A reduced-width model with a tiny random CLIP stands in for the real weights. Each stack uses its own queue and
key prefix on the machine's Redis, and removes its keys when it stops.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from vad.cli.stack import free_port, wait_for

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


@contextmanager
def running_service(root: Path, bundle: Any) -> Iterator[Service]:
    """Start a worker and the API serving ``bundle`` (a :class:`model.bundle.Bundle`); logs and uploads in ``root``.

    Skips the test when no Redis answers on 127.0.0.1:6379 (``scripts/ensure-redis.sh`` starts one).
    """
    from model.bundle import save_bundle

    conn = redis.Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    bundle_path = root / "tiny.safetensors"
    save_bundle(bundle, bundle_path)
    tag = secrets.token_hex(4)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VAD_REDIS_URL": REDIS_URL, "VAD_BUNDLE": str(bundle_path),
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
        yield Service(url, env, worker, conn, f"e2e-{tag}", bundle_path)
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
