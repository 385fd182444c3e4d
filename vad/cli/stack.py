"""The local stack of ``vad serve`` and ``vad demo``: Redis (embedded when no URL is given), the API and the workers.

Every part is a child process of this one. Ctrl-C (or SIGTERM) stops them all — API and workers (warm shutdown)
together, then the embedded Redis — and leaves no process behind. The same launcher starts the stacks of the
end-to-end tests (``tests/e2e/conftest.py``) and of ``bench/service.py``: one way to start the service locally.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vad.exceptions import StackError


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if this process dies without stopping it (e.g. SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_ports(count: int, kind: int = socket.SOCK_STREAM) -> list[int]:
    """``count`` different ports nothing listens on at 127.0.0.1 now (TCP, or UDP with ``socket.SOCK_DGRAM``).

    Every socket stays bound until all are picked, so the system cannot hand out one port twice.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, kind)) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on at 127.0.0.1 now (TCP, or UDP with ``socket.SOCK_DGRAM``)."""
    return free_ports(1, kind)[0]


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (no other server listens there)."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StackError(f"{what} exited with code {process.returncode} while starting")
        if check():
            return
        time.sleep(0.1)
    raise StackError(f"{what} did not become ready within {timeout_s:.0f}s")


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def not_ready(url: str, path: str = "/readyz", timeout_s: float = 2.0) -> str | None:
    """``None`` when ``GET url + path`` answers 200, else why not: what a /readyz answer that is not 200 says (its
    ``detail``, e.g. ``not ready: no worker is alive``), or that nothing answered. The one readiness check of the
    launcher, ``vad demo``'s client and the tests."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + path, timeout=timeout_s) as response:
            return None if response.status == 200 else f"{path} answered {response.status}"
    except urllib.error.HTTPError as exc:  # e.g. 503 while not ready
        try:
            return str(json.loads(exc.read())["detail"])
        except (ValueError, KeyError, TypeError, OSError):
            return f"{path} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"the API did not answer: {getattr(exc, 'reason', exc)}"


@dataclass
class LocalStack:
    """Starts and stops the parts; use as a context manager.

    Attributes:
        host: Address the API listens on.
        port: Port of the API.
        workers: Worker processes of the first ``vad worker`` (its ``--concurrency``); :meth:`start_worker` adds
            more ``vad worker`` supervisors, e.g. with a storage folder of their own, as on another host.
        redis_url: The Redis to use; ``None`` starts an embedded ``redis-server`` on a free port.
        env: Added to every part's environment (``VAD_*`` settings).
        worker_env: Added to the workers' environment only (after ``env``).
        api_env: Added to the API's environment only (after ``env``).
        log_path: When set, the parts append their output to this file, not the terminal.
        log_dir: When set (and ``log_path`` is not), each part writes ``<part>.log`` there (``api.log``,
            ``worker.log``, ``redis.log``).
        ready_path: When set, :meth:`start` waits until ``GET url + ready_path`` answers 200 (``/readyz``: the API
            and a live worker); otherwise until the API's port accepts connections.
        ready_timeout_s: How long :meth:`start` waits for that.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    redis_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    worker_env: dict[str, str] = field(default_factory=dict)
    api_env: dict[str, str] = field(default_factory=dict)
    log_path: str | Path | None = None
    log_dir: str | Path | None = None
    ready_path: str | None = None
    ready_timeout_s: float = 60.0
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    _redis_dir: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def child_env(self) -> dict[str, str]:
        """The environment every part starts with (this process's, ``env``, the Redis URL, offline hub)."""
        if self.redis_url is None:
            raise StackError("the stack has no Redis yet: call start() first")
        return {**os.environ, **self.env, "VAD_REDIS_URL": self.redis_url, "HF_HUB_OFFLINE": "1"}

    def part(self, name: str) -> subprocess.Popen:
        """The process of the part called ``name`` that started last (``api``, ``worker``, ``redis``)."""
        for part, process in reversed(self.processes):
            if part == name:
                return process
        raise KeyError(f"no part called {name!r} was started")

    def start(self) -> LocalStack:
        try:
            self.redis_url = self.redis_url or self._start_redis()
            self.start_worker(self.workers)
            api = self._start("api", [sys.executable, "-m", "vad", "api", "--host", self.host, "--port", str(self.port),
                                      "--log-level", "warning"],
                              {**self.child_env, **self.api_env})
            if self.ready_path is None:
                wait_for(lambda: _tcp_open(self.port), self.ready_timeout_s, "the API", api)
            else:
                path = self.ready_path
                wait_for(lambda: not_ready(self.url, path) is None, self.ready_timeout_s, f"the API ({self.url}{path})",
                         api)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout_s: float, poll_s: float = 0.5) -> None:
        """Wait until the API's ``/readyz`` answers 200: Redis answers, a worker is alive (its models loaded) and the
        storage is writable.

        Raises:
            StackError: A part exited, or the stack was not ready within ``timeout_s`` (with what ``/readyz`` said).
        """
        deadline, last = time.monotonic() + timeout_s, "the API did not answer"
        while time.monotonic() < deadline:
            for name, process in self.processes:
                if process.poll() is not None:
                    raise StackError(f"the {name} exited with code {process.returncode} while starting")
            reason = not_ready(self.url, timeout_s=5.0)
            if reason is None:
                return
            last = reason
            time.sleep(poll_s)
        raise StackError(f"the stack was not ready within {timeout_s:.0f} s: {last}")

    def start_worker(self, concurrency: int | None = None, env: dict[str, str] | None = None,
                     log: str | Path | None = None) -> subprocess.Popen:
        """Start a ``vad worker`` (a supervisor and its worker processes) on this stack's Redis and settings.

        Args:
            concurrency: Its worker processes (default: the ``vad worker`` default).
            env: Added to its environment after ``env`` and ``worker_env`` (e.g. ``VAD_STORAGE_DIR`` of another host).
            log: Its own log file (default: the stack's).
        """
        cmd = [sys.executable, "-m", "vad", "worker"]
        if concurrency is not None:
            cmd += ["--concurrency", str(concurrency)]
        return self._start("worker", cmd, {**self.child_env, **self.worker_env, **(env or {})}, log)

    def _log_file(self, name: str, log: str | Path | None) -> Path | None:
        if log is not None:
            return Path(log)
        if self.log_path is not None:
            return Path(self.log_path)
        if self.log_dir is not None:
            return Path(self.log_dir) / f"{name}.log"
        return None

    def _start(self, name: str, cmd: list[str], env: dict[str, str], log: str | Path | None = None
               ) -> subprocess.Popen:
        # Own session: a terminal's Ctrl-C reaches only us, and we stop the parts in order.
        path = self._log_file(name, log)
        out = path.open("ab") if path is not None else None
        try:
            process = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=_die_with_parent,
                                       stdout=out, stderr=subprocess.STDOUT if out else None)
        finally:
            if out is not None:
                out.close()  # the child keeps its own copy
        self.processes.append((name, process))
        return process

    def _start_redis(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("no REDIS_URL is set and redis-server is not on PATH: install Redis "
                             "(apt-get install redis-server) or set REDIS_URL=redis://host:6379/0")
        port = free_port()
        self._redis_dir = tempfile.mkdtemp(prefix="vad-redis-")
        redis = self._start("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self._redis_dir,
                                      "--maxmemory-policy", "noeviction"], dict(os.environ))
        wait_for(lambda: _tcp_open(port), 15, "redis-server", redis)
        return f"redis://127.0.0.1:{port}/0"

    def stop(self, timeout_s: float = 40.0) -> None:
        """Stop the API and the workers together (SIGTERM: the workers finish their jobs' current step and leave
        warmly), then the embedded Redis; kills what does not stop within ``timeout_s``."""
        services = [p for name, p in self.processes if name != "redis"]
        _stop_all(services, timeout_s)
        _stop_all([p for name, p in self.processes if name == "redis"], timeout_s)
        self.processes.clear()
        if self._redis_dir:
            shutil.rmtree(self._redis_dir, ignore_errors=True)
            self._redis_dir = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self) -> int:
        """Block until a part exits (an error) or SIGINT/SIGTERM; returns the exit code for the CLI."""
        stop = {"requested": False}

        def request_stop(_signum: int, _frame: object) -> None:
            stop["requested"] = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        while not stop["requested"]:
            for name, process in self.processes:
                if process.poll() is not None:
                    print(f"vad serve: {name} exited with code {process.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.2)
        return 0


def _stop_all(processes: list[subprocess.Popen], timeout_s: float) -> None:
    """SIGTERM to each running process at once, then wait for all; kill those still running after ``timeout_s``."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
