"""The hostile URL table (tests/support/hostile_urls.py) against the worker's own checks, made where it connects: a
callback is never sent, a source is never fetched, a stream never reaches its reader, whatever the API let through
(records written straight to Redis here, as an older API or a changed policy could have left them). A stream host
allowed for its addresses is read at the address that was checked, not at a new resolution of its name."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.integration.workers.test_stream_service import env, wait  # noqa: F401 - env is a fixture
from tests.support.hostile_urls import HOSTILE, SECRET_WORDS, STRICT, ids
from vad.exceptions import SourceRefused
from vad.storage import Scratch
from vad.streams import StreamRecord, StreamState
from workers.runtime import fetch, notify
from workers.runtime.streams import StreamService
from workers.settings import WorkerSettings


def _forbid(what: str) -> Any:
    def called(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{what} was reached")

    return called


@pytest.mark.parametrize(("url", "what"), HOSTILE, ids=ids(HOSTILE))
def test_no_callback_is_sent_and_no_source_fetched(url: str, what: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setattr(notify, "pinned_connection", _forbid("a callback connection"))
    monkeypatch.setattr(fetch, "pinned_connection", _forbid("a source connection"))
    settings = WorkerSettings(**STRICT)
    assert notify.deliver(url, b"{}", settings, "job j") is False
    assert "not sent" in caplog.text
    with pytest.raises(SourceRefused) as refused, fetch.fetch_source(url, settings, Scratch(tmp_path)):
        pass
    assert not any(word in str(refused.value) + caplog.text for word in SECRET_WORDS)
    assert not list(tmp_path.iterdir())  # nothing written


def _service(ctx: Any, readers: list[StreamRecord], capacity: int) -> StreamService:
    def reader(record: StreamRecord, engine: Any, sink: Any, settings: Any) -> Any:
        readers.append(record)
        raise RuntimeError("test: the reader is not under test")

    return StreamService(ctx, "w1", capacity=capacity, engine_factory=lambda model: None,
                         runner_factory=reader).start()


def test_no_hostile_stream_reaches_the_reader(env) -> None:  # noqa: F811 - the fixture
    ctx, store = env
    ctx.settings = WorkerSettings(key_prefix=ctx.settings.key_prefix, stream_lease_ttl_s=2, **STRICT)
    records = [store.create(StreamRecord(id=f"h{i}-{secrets.token_hex(2)}", owner="k", url=url, display_url="x"))
               for i, (url, _) in enumerate(HOSTILE)]
    readers: list[StreamRecord] = []
    worker = _service(ctx, readers, capacity=len(records))
    try:
        wait(lambda: all(store.get(r.id, "k").status == StreamState.failed for r in records), 30.0)
    finally:
        worker.close()
    assert readers == []
    for record in records:
        reason = store.get(record.id, "k").reason or ""
        assert reason.startswith("the stream URL is no longer allowed"), reason
        assert not any(word in reason for word in SECRET_WORDS), reason


def test_a_stream_host_allowed_for_its_addresses_is_read_at_the_checked_one(env, monkeypatch) -> None:  # noqa: F811
    ctx, store = env
    real = socket.getaddrinfo
    answers = iter(["203.0.113.7"] + ["127.0.0.1"] * 100)  # the check's answer, then a rebinding one

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "cam.rebind.test":
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port or 0))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    ctx.settings = WorkerSettings(key_prefix=ctx.settings.key_prefix, stream_lease_ttl_s=2,
                                  stream_allowlist=["203.0.113.0/24"])
    url = "rtsp://admin:hunter2@cam.rebind.test:8554/s?token=t"
    record = store.create(StreamRecord(id=f"p-{secrets.token_hex(2)}", owner="k", url=url, display_url="x"))
    readers: list[StreamRecord] = []
    worker = _service(ctx, readers, capacity=1)
    try:
        wait(lambda: store.get(record.id, "k").status == StreamState.failed)
    finally:
        worker.close()
    # the reader got the checked address; a second lookup would have answered 127.0.0.1
    assert [r.url for r in readers] == ["rtsp://admin:hunter2@203.0.113.7:8554/s?token=t"]
