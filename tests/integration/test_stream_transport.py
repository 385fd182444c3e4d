"""RTSP transports against a real RTSP server: GStreamer's (``tests/support/rtsp_camera.py``), serving a live H.264
test pattern over TCP only, UDP only, or both, as cameras and NVR restreams do (``rtsp-server-perl``, the relay of
the other stream tests, refuses TCP).

* ``tcp`` scores from a TCP-only camera; ``udp`` against it fails within the connect timeout, saying why;
* ``auto`` (TCP first, then UDP) scores from a TCP-only and from a UDP-only camera, and keeps the transport that
  worked when it reconnects.

``scripts/ensure-stream-tools.sh`` installs GStreamer's RTSP server; without it these tests skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.rtsp_camera import RtspCamera, gstreamer_missing
from tests.support.running import Running
from tests.support.stream_sink import RecordingSink
from workers.settings import WorkerSettings
from workers.stream import StreamEngine

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def settings(**overrides: Any) -> WorkerSettings:
    base = {"device": "cpu", "clip_precision": "fp32", "stream_read_timeout_s": 2.0, "stream_backoff_initial_s": 0.2,
            "stream_backoff_max_s": 1.0, "stream_connect_timeout_s": 20.0}
    return WorkerSettings(**{**base, **overrides})


@pytest.fixture(scope="module")
def engine() -> StreamEngine:
    missing = gstreamer_missing()
    if missing:
        pytest.skip(missing)
    from tests.conftest import tiny_bundle

    return StreamEngine(tiny_bundle("ucf", seed=2), settings())


class Reading(Running):
    """A runner reading ``url`` over ``transport`` in a thread."""

    def __init__(self, url: str, engine: StreamEngine, transport: str, **overrides: Any) -> None:
        super().__init__(url, engine, settings(**overrides), RecordingSink(), transport=transport)

    def scores(self, count: int, timeout_s: float = 40.0) -> bool:
        return self.sink.wait_for(lambda s: len(s.scores) >= count, timeout_s)


@pytest.fixture
def camera(tmp_path: Path) -> Iterator[Any]:
    started: list[RtspCamera] = []

    def start(protocols: str, port: int = 0) -> RtspCamera:
        started.append(RtspCamera(protocols, port, log=tmp_path / f"camera-{len(started)}.log").start())
        return started[-1]

    yield start
    for running in started:
        running.stop()


def test_tcp_scores_from_a_camera_that_serves_rtsp_over_tcp_only(engine: StreamEngine, camera: Any) -> None:
    cam = camera("tcp")
    with Reading(cam.url, engine, "tcp") as running:
        assert running.scores(3), running.sink.states()
        assert running.runner.source.rtsp_transport == "tcp"
    assert running.sink.states()[:2] == ["connecting", "live"]
    indices = [r.item.index for r in running.sink.scores]
    assert indices == sorted(set(indices)) and all(0.0 <= r.item.score <= 1.0 for r in running.sink.scores)


def test_udp_against_a_tcp_only_camera_fails_with_a_readable_reason(engine: StreamEngine, camera: Any) -> None:
    cam = camera("tcp")
    with Reading(cam.url, engine, "udp", stream_connect_timeout_s=3.0) as running:
        assert running.sink.wait_for(lambda s: s.states()[-1:] == ["failed"], 20), running.sink.states()
    assert running.final is not None and running.final.state == "failed" and running.sink.scores == []
    assert running.final.reason == (f"could not read {cam.url} within 3 s: cannot open it over UDP: the server does "
                                    "not offer this transport (461 Unsupported transport)")


@pytest.mark.parametrize("protocols", ["tcp", "udp"])
def test_auto_reads_a_tcp_only_and_a_udp_only_camera_and_keeps_what_worked(engine: StreamEngine, camera: Any,
                                                                             protocols: str) -> None:
    cam = camera(protocols)
    with Reading(cam.url, engine, "auto") as running:
        assert running.scores(3), running.sink.states()
        assert running.runner.source.rtsp_transport == protocols
        cam.stop()  # the camera restarts, now offering both: a reconnection keeps the transport that worked
        assert running.sink.wait_for(lambda s: "reconnecting" in s.states(), 20), running.sink.states()
        camera("both", cam.port)
        count = len(running.sink.scores)
        assert running.scores(count + 3), running.sink.states()
        assert running.runner.source.rtsp_transport == protocols
    states = running.sink.states()
    assert states[:4] == ["connecting", "live", "reconnecting", "live"], states
