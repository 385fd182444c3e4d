"""The API's server entry point (``vad api``): the start-up warning for an open API, and who starts it."""

from __future__ import annotations

import pytest
import uvicorn

from service.server import binds_beyond_loopback, run
from service.settings import ServiceSettings


@pytest.mark.parametrize(("host", "beyond"), [
    ("127.0.0.1", False), ("127.0.0.53", False), ("::1", False), ("[::1]", False), ("localhost", False),
    ("0.0.0.0", True), ("::", True), ("", True), ("10.0.0.5", True), ("api.example.com", True),
])
def test_binds_beyond_loopback(host: str, beyond: bool) -> None:
    assert binds_beyond_loopback(host) is beyond


@pytest.mark.parametrize(("host", "keys", "warned"), [
    ("0.0.0.0", [], True), ("10.0.0.5", [], True), ("0.0.0.0", ["k" * 32], False), ("127.0.0.1", [], False),
])
def test_run_warns_once_when_open_beyond_loopback(host: str, keys: list[str], warned: bool,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    started: list[tuple[str, int]] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: started.append((self.config.host, self.config.port)))
    settings = ServiceSettings(redis_url="redis://127.0.0.1:1/0", api_keys=keys)
    run(host, 8000, settings, log_level="info")
    assert started == [(host, 8000)]
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("WARNING")]
    if warned:
        assert len(warnings) == 1
        assert f"listens on {host}:8000" in warnings[0] and "VAD_API_KEYS is empty" in warnings[0]
    else:
        assert warnings == []


def test_vad_api_refuses_invalid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from vad.cli import app

    monkeypatch.setenv("VAD_REDIS_TIMEOUT_S", "-1")
    result = CliRunner().invoke(app, ["api", "--host", "127.0.0.1"])
    assert result.exit_code == 2 and "invalid VAD_* settings" in result.output


def test_vad_serve_and_the_api_image_start_the_api_through_vad_api(monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import sys
    from pathlib import Path

    from vad.cli import stack

    commands: dict[str, list[str]] = {}
    monkeypatch.setattr(stack.LocalStack, "_start",
                        lambda self, name, cmd, env, log=None: commands.setdefault(name, cmd))
    monkeypatch.setattr(stack, "wait_for", lambda *args, **kwargs: None)
    stack.LocalStack(host="0.0.0.0", port=8123, redis_url="redis://127.0.0.1:1/0").start()
    assert commands["api"][:4] == [sys.executable, "-m", "vad", "api"]
    assert commands["api"][4:8] == ["--host", "0.0.0.0", "--port", "8123"]
    dockerfile = (Path(__file__).resolve().parents[3] / "docker" / "api.Dockerfile").read_text().splitlines()
    (cmd,) = [json.loads(line.removeprefix("CMD ")) for line in dockerfile if line.startswith("CMD ")]
    assert cmd == ["vad", "api", "--host", "0.0.0.0", "--port", "8000"]
