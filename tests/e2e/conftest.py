"""The deployed service with real parts, shared by the end-to-end tests: Redis, `vad worker` as a subprocess,
uvicorn serving the API.

A reduced-width model with a tiny random CLIP stands in for the real weights. Each stack uses its own queue and
key prefix on the machine's Redis, and removes its keys when it stops.
"""

from __future__ import annotations

import os
import secrets
import shutil
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

from tests.conftest import answers
from vad.cli.stack import _tcp_open, free_port, wait_for

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
            response = httpx.get(f"{self.url}/v1/jobs/{job_id}", timeout=10)
            job = response.json()
            if response.status_code == 503:  # Redis restarting: ask again
                time.sleep(0.2)
                continue
            if job["status"] in ("finished", "failed", "canceled"):
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not end within {timeout_s}s: {job}")

    def start_worker(self, log: Path) -> subprocess.Popen:
        """Start another `vad worker` (a supervisor) like the first one; it replaces ``worker`` for the clean-up."""
        self.worker = _start([sys.executable, "-m", "vad", "worker"], self.env, log)
        return self.worker

    def worker_pids(self) -> list[int]:
        from rq import Queue, Worker

        return [w.pid for w in Worker.all(queue=Queue(self.queue, connection=self.conn)) if w.pid]


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


@contextmanager
def running_service(root: Path, bundle: Any, redis_url: str = REDIS_URL,
                    worker_env: dict[str, str] | None = None) -> Iterator[Service]:
    """Start a worker and the API serving ``bundle`` (a :class:`model.bundle.Bundle`); logs and uploads in ``root``.

    ``worker_env`` adds to the worker's environment only (e.g. a test hook on ``PYTHONPATH``). Skips the test when
    no Redis answers on 127.0.0.1:6379 (``scripts/ensure-redis.sh`` starts one).
    """
    from model.bundle import save_bundle

    conn = redis.Redis.from_url(redis_url)
    try:
        conn.ping()
    except redis.ConnectionError:
        pytest.skip(f"no Redis at {redis_url}")
    bundle_path = root / "tiny.safetensors"
    save_bundle(bundle, bundle_path)
    tag = secrets.token_hex(4)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VAD_REDIS_URL": redis_url, "VAD_BUNDLE": str(bundle_path),
           "VAD_DEVICE": "cpu", "VAD_QUEUE_NAME": f"e2e-{tag}", "VAD_KEY_PREFIX": f"e2e-{tag}:",
           "VAD_STORAGE_DIR": str(root / "uploads"), "VAD_HEARTBEAT_INTERVAL_S": "1", "VAD_HEARTBEAT_TTL_S": "4",
           "VAD_MAX_RETRIES": "2"}
    port = free_port()
    worker = _start([sys.executable, "-m", "vad", "worker"], {**env, **(worker_env or {})}, root / "worker.log")
    api = _start([sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory", "--port", str(port)],
                 env, root / "api.log")
    url = f"http://127.0.0.1:{port}"

    service = Service(url, env, worker, conn, f"e2e-{tag}", bundle_path)
    try:
        wait_for(lambda: answers(url), 120, "the API with a live worker", api)
        yield service
    finally:
        for process in (api, service.worker):
            process.send_signal(signal.SIGTERM)
        for process in (api, service.worker):
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
        keys = [*conn.scan_iter(f"e2e-{tag}:*"), *conn.scan_iter(f"*e2e-{tag}*")]
        if keys:
            conn.delete(*keys)


@dataclass
class RedisServer:
    port: int
    workdir: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir), "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec"],
            stdout=(self.workdir / "redis.log").open("a"), stderr=subprocess.STDOUT)
        wait_for(lambda: _tcp_open(self.port), 15, "redis-server", self.process)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: a clean shutdown that flushes the AOF (what a restart does); SIGKILL: a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)


@contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    """Our own ``redis-server`` on a free port, persisting like compose's (AOF): for tests that stop or restart
    Redis, which must never touch the machine's. Skips the test when ``redis-server`` is not installed."""
    server = RedisServer(free_port(), workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop(signal.SIGKILL)
