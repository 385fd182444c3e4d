"""`vad serve` checks what a user can get wrong before it starts anything, and says "up" only once /readyz is 200."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

import vad.cli  # noqa: F401 - registers every command on the shared app
from vad.cli.app import app
from vad.cli.stack import LocalStack, free_port
from vad.exceptions import StackError

ENV = ("VAD_BUNDLE", "VAD_MODELS", "VAD_REDIS_URL", "REDIS_URL")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model.bundle import save_bundle
    from tests.conftest import tiny_bundle

    path = tmp_path_factory.mktemp("serve") / "tiny.safetensors"
    save_bundle(tiny_bundle("xd", seed=3), path)
    return path


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the command started: nothing, unless it got past its checks (the stack itself is not run here)."""
    calls: list[str] = []
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(LocalStack, "start", lambda self: calls.append("start") or self)
    monkeypatch.setattr(LocalStack, "stop", lambda self, timeout_s=40.0: calls.append("stop"))
    return calls


def serve(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["serve", "--port", str(free_port()), *args])
    return result.exit_code, result.output.strip().splitlines()


def one_error(code: int, lines: list[str], expected: str) -> None:
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


def test_no_model_configured_starts_nothing(started: list[str]) -> None:
    one_error(*serve(), "no model configured: set VAD_BUNDLE")
    assert started == []


def test_a_missing_or_unreadable_bundle_starts_nothing(started: list[str], monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("VAD_BUNDLE", str(tmp_path / "nowhere.safetensors"))
    one_error(*serve(), "VAD_BUNDLE: bundle not found")
    (tmp_path / "notes.safetensors").write_text("not a bundle")
    monkeypatch.setenv("VAD_BUNDLE", str(tmp_path / "notes.safetensors"))
    one_error(*serve(), "is not a readable bundle")
    assert started == []


def test_a_missing_extra_model_starts_nothing(started: list[str], monkeypatch: pytest.MonkeyPatch, bundle: Path,
                                             tmp_path: Path) -> None:
    monkeypatch.setenv("VAD_BUNDLE", str(bundle))
    monkeypatch.setenv("VAD_MODELS", json.dumps({"xd": str(tmp_path / "xd.safetensors")}))
    one_error(*serve(), "VAD_MODELS['xd']: bundle not found")
    monkeypatch.setenv("VAD_THRESHOLD", "two")
    one_error(*serve(), "invalid settings (options or VAD_* environment variables): threshold:")
    assert started == []


def test_a_busy_port_or_a_silent_redis_starts_nothing(started: list[str], monkeypatch: pytest.MonkeyPatch,
                                                      bundle: Path) -> None:
    monkeypatch.setenv("VAD_BUNDLE", str(bundle))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--port", str(port)])
    one_error(result.exit_code, result.output.strip().splitlines(), f"port {port} on 127.0.0.1 is in use")
    monkeypatch.setenv("REDIS_URL", f"redis://:secret@127.0.0.1:{free_port()}/0")
    code, lines = serve()
    one_error(code, lines, "does not answer")
    assert "secret" not in lines[0]
    assert started == []


def test_up_is_said_only_once_ready_and_a_stack_never_ready_is_stopped(started: list[str], bundle: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAD_BUNDLE", str(bundle))

    def never_ready(self: LocalStack, timeout_s: float) -> None:
        raise StackError(f"the stack was not ready within {timeout_s:.0f} s: not ready: no worker is alive")

    monkeypatch.setattr(LocalStack, "wait_ready", never_ready)
    result = CliRunner().invoke(app, ["serve", "--port", str(free_port()), "--ready-timeout", "7"])
    assert result.exit_code == 2 and "is up" not in result.output
    assert "error: the stack was not ready within 7 s: not ready: no worker is alive" in result.output
    assert started == ["start", "stop"]


class Readyz(BaseHTTPRequestHandler):
    """/readyz: 503 (with the API's body) for the first ``not_ready`` requests, then 200."""

    not_ready = 2
    seen = 0

    def do_GET(self) -> None:
        type(self).seen += 1
        ready = type(self).seen > type(self).not_ready
        body = {"ready": True} if ready else {"detail": "not ready: no worker is alive", "code": "not_ready"}
        data = json.dumps(body).encode()
        self.send_response(200 if ready else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[LocalStack, type[Readyz]]]:
    handler = type("Handler", (Readyz,), {"seen": 0, "not_ready": 2})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalStack(port=server.server_address[1]), handler
    finally:
        server.shutdown()
        server.server_close()


def test_wait_ready_returns_once_readyz_answers_200(api: tuple[LocalStack, type[Readyz]]) -> None:
    stack, handler = api
    stack.wait_ready(timeout_s=30, poll_s=0.05)
    assert handler.seen == 3


def test_wait_ready_times_out_with_what_readyz_said(api: tuple[LocalStack, type[Readyz]]) -> None:
    stack, handler = api
    handler.not_ready = 10**6
    with pytest.raises(StackError, match=r"not ready within 1 s: not ready: no worker is alive"):
        stack.wait_ready(timeout_s=1, poll_s=0.05)


def test_wait_ready_names_a_part_that_exited(api: tuple[LocalStack, type[Readyz]]) -> None:
    stack, handler = api
    handler.not_ready = 10**6
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    stack.processes.append(("workers", dead))
    with pytest.raises(StackError, match="the workers exited with code 3 while starting"):
        stack.wait_ready(timeout_s=30, poll_s=0.05)
