"""A real uvicorn serving the API stops within seconds while a Server-Sent Events reader is connected, and the reader
gets a complete response (the chunked body's last chunk, a ``retry:`` hint) instead of a dropped connection."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import running_api

STOP_WITHIN_S = 5.0  # one XREAD wait (1 s) and uvicorn's own shutdown steps, with room for a loaded machine


@pytest.fixture
def api(tmp_path: Path, live_redis) -> Iterator[tuple[str, subprocess.Popen]]:
    """The API with streams on and no worker: a stream stays queued, and its event stream stays open."""
    with running_api(tmp_path, VAD_STREAM_ALLOWLIST="127.0.0.1/32") as running:
        yield running


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.timing
def test_an_open_event_stream_ends_cleanly_and_promptly_when_the_api_stops(api, sig: int) -> None:
    url, process = api
    created = httpx.post(f"{url}/v1/streams", json={"url": "rtsp://127.0.0.1:9/cam"}, timeout=10)
    assert created.status_code == 201, created.text
    body: list[bytes] = []
    outcome: dict[str, object] = {}
    opened = threading.Event()

    def read() -> None:
        try:
            with httpx.stream("GET", f"{url}/v1/streams/{created.json()['id']}/events",
                              headers={"Accept": "text/event-stream"}, timeout=60) as response:
                outcome["headers"] = response.headers
                for chunk in response.iter_raw():  # raises on a chunked body cut short
                    body.append(chunk)
                    opened.set()
            outcome["complete"] = True
        except httpx.HTTPError as exc:
            outcome["error"] = exc
        finally:
            opened.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(20) and body, outcome
    time.sleep(0.5)  # the loop is inside its blocking read
    started = time.monotonic()
    process.send_signal(sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the API did not stop within 30 s of the signal while an event stream was open")
    took = time.monotonic() - started
    reader.join(10)
    print(f"stopped {took:.2f} s after the signal")
    assert took < STOP_WITHIN_S, f"the API took {took:.1f} s to stop"
    assert outcome.get("complete") and "error" not in outcome, outcome
    assert outcome["headers"]["transfer-encoding"] == "chunked"  # so complete means the last chunk came
    text = b"".join(body).decode()
    assert text.startswith("retry: 2000\n\n") and text.endswith("retry: 2000\n\n"), text
