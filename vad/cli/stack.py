"""``vad serve``: a local stack of Redis (embedded when no REDIS_URL), the API and the workers.

Every part is a child process of this one. Ctrl-C (or SIGTERM) stops them all — workers first,
with a warm shutdown, then the API, then the embedded Redis — and leaves no process behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


def _detail(answer: Any) -> str:
    """What a /readyz answer that is not 200 says (its ``detail``, e.g. ``not ready: no worker is alive``)."""
    try:
        return str(answer.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return f"/readyz answered {answer.status_code}"


@dataclass
class LocalStack:
    """Starts and stops the parts; use as a context manager."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    redis_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    log_path: str | None = None  # when set, the parts write their output to this file (appended), not the terminal
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    _redis_dir: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalStack:
        try:
            self.redis_url = self.redis_url or self._start_redis()
            child_env = {**os.environ, **self.env, "VAD_REDIS_URL": self.redis_url, "HF_HUB_OFFLINE": "1"}
            self._start("workers", [sys.executable, "-m", "vad", "worker", "--concurrency", str(self.workers)],
                        child_env)
            api = self._start("api", [sys.executable, "-m", "vad", "api", "--host", self.host, "--port",
                                      str(self.port), "--log-level", "warning"], child_env)
            wait_for(lambda: _tcp_open(self.port), 60, "the API", api)
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
        import httpx

        deadline, last = time.monotonic() + timeout_s, "the API did not answer"
        while time.monotonic() < deadline:
            for name, process in self.processes:
                if process.poll() is not None:
                    raise StackError(f"the {name} exited with code {process.returncode} while starting")
            try:
                answer = httpx.get(f"{self.url}/readyz", timeout=5.0)
            except httpx.HTTPError as exc:
                last = f"the API did not answer: {exc}"
            else:
                if answer.status_code == 200:
                    return
                last = _detail(answer)
            time.sleep(poll_s)
        raise StackError(f"the stack was not ready within {timeout_s:.0f} s: {last}")

    def _start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        # Own session: a terminal's Ctrl-C reaches only us, and we stop the parts in order.
        log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115 - the child keeps its own copy
        try:
            process = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=_die_with_parent,
                                       stdout=log, stderr=subprocess.STDOUT if log else None)
        finally:
            if log is not None:
                log.close()
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
        """Stop in reverse order of start: workers (warm), API, Redis. Kills what does not stop in time."""
        for _name, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
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

