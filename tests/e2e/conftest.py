"""The deployed service with real parts, shared by the end-to-end tests: Redis, `vad worker` as a subprocess,
uvicorn serving the API, started by :class:`vad.cli.stack.LocalStack` (the launcher of `vad serve`).

A reduced-width model with a tiny random CLIP stands in for the real weights. Each stack uses its own queue and
key prefix on the machine's Redis, and removes its keys when it stops.

Tests that only need a running service take the session's ``service`` fixture: one stack for all of them (a
stack costs 8-26 s to start on 2 cores). Tests that stop, kill or reconfigure parts of a stack (its Redis, its
supervisor, streams with a lease TTL of their own) start their own with :func:`running_service`.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from vad.cli.stack import LocalStack, _tcp_open, free_port, wait_for

REDIS_URL = "redis://127.0.0.1:6379/0"
HOLD_HOOK = Path(__file__).parent / "hold"  # test_jobs_e2e.py's hook; inert unless a test sets its Redis key
SHARED_ENV = {  # what the session's shared stack runs with, beyond running_service's own settings
    "VAD_STREAM_ALLOWLIST": "127.0.0.1/32",  # POST /v1/streams is on (schemathesis tests it) ...
    "VAD_STREAMS_PER_WORKER": "0",  # ... but no worker runs a stream: test_streams_e2e.py has its own stack
}


@dataclass
class Service:
    url: str
    env: dict[str, str]
    conn: redis.Redis
    queue: str
    bundle: Path
    stack: LocalStack

    @property
    def worker(self) -> subprocess.Popen:
        """The `vad worker` supervisor that started last."""
        return self.stack.part("worker")

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
        """Start another `vad worker` (a supervisor) like the first one; it becomes ``worker``."""
        return self.stack.start_worker(log=log)

    def worker_pids(self) -> list[int]:
        from rq import Queue, Worker

        return [w.pid for w in Worker.all(queue=Queue(self.queue, connection=self.conn)) if w.pid]


@contextmanager
def running_service(root: Path, bundle: Any, redis_url: str = REDIS_URL, env: dict[str, str] | None = None,
                    worker_env: dict[str, str] | None = None) -> Iterator[Service]:
    """Start a worker and the API serving ``bundle`` (a :class:`model.bundle.Bundle`); logs (``worker.log``,
    ``api.log``) and uploads in ``root``.

    ``env`` adds ``VAD_*`` settings for every part; ``worker_env`` adds to the worker's environment only (e.g. a test
    hook on ``PYTHONPATH``). Skips the test when no Redis answers on 127.0.0.1:6379 (``scripts/ensure-redis.sh``
    starts one).
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
    settings = {"VAD_BUNDLE": str(bundle_path), "VAD_DEVICE": "cpu", "VAD_QUEUE_NAME": f"e2e-{tag}",
                "VAD_KEY_PREFIX": f"e2e-{tag}:", "VAD_STORAGE_DIR": str(root / "uploads"),
                "VAD_HEARTBEAT_INTERVAL_S": "1", "VAD_HEARTBEAT_TTL_S": "4", "VAD_MAX_RETRIES": "2", **(env or {})}
    stack = LocalStack(port=free_port(), redis_url=redis_url, env=settings, worker_env=worker_env or {},
                       log_dir=root, ready_path="/readyz", ready_timeout_s=120)
    try:
        stack.start()
        yield Service(stack.url, stack.child_env, conn, f"e2e-{tag}", bundle_path, stack)
    finally:
        stack.stop()
        keys = [*conn.scan_iter(f"e2e-{tag}:*"), *conn.scan_iter(f"*e2e-{tag}*")]
        if keys:
            conn.delete(*keys)


@pytest.fixture(scope="session")
def e2e_bundle() -> Any:
    """The shared stack's model: a reduced-width UCF model with a tiny random CLIP, labelled a demo model (so that
    the web page shows its label)."""
    from tests.conftest import tiny_bundle

    return dataclasses.replace(tiny_bundle("ucf", seed=1), demo=True)


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory, e2e_bundle: Any) -> Iterator[Service]:
    """One running stack for every test that only needs a service (started when the first asks for it).

    Its settings are :data:`SHARED_ENV`; its worker has the hold hook of ``hold/`` on its ``PYTHONPATH``. Tests
    leave it running: a test that kills a worker process waits until the supervisor has replaced it.
    """
    path = os.pathsep.join(p for p in (str(HOLD_HOOK), os.environ.get("PYTHONPATH", "")) if p)
    with running_service(tmp_path_factory.mktemp("shared-service"), e2e_bundle, env=SHARED_ENV,
                         worker_env={"PYTHONPATH": path}) as running:
        yield running


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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (selenium's WebDriver) for a test module; skips without one."""
    from tests.support.browser import chromium

    with chromium() as driver:
        yield driver
