"""A live stream's latest frame (:class:`workers.evidence.stream.StreamEvidence`): written to Redis by the evidence
thread at most every ``stream_snapshot_every_s``, the newest frame each time, and never once the stream is deleted."""

from __future__ import annotations

import io
import secrets
import time
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image

from vad.keys import Keys
from vad.storage import LocalStorage
from vad.streamlua import DELETE
from workers.evidence.store import EvidenceSource, EvidenceStore
from workers.evidence.stream import StreamEvidence
from workers.settings import WorkerSettings


def _feed(evidence: StreamEvidence, seconds: float, done: Any = None) -> None:
    """A kept frame every 20 ms (stream time 0.1 s apart) for ``seconds``, or until ``done()`` says so."""
    start, n = time.monotonic(), 0
    while time.monotonic() - start < seconds and not (done is not None and done()):
        n += 1
        evidence.frame(np.full((48, 64, 3), n % 256, np.uint8), n * 0.1)
        time.sleep(0.02)


def test_the_latest_frame_is_written_at_most_every_period_and_never_after_the_stream_is_deleted(
        live_redis, tmp_path) -> None:
    keys, every = Keys(f"test-frame-{secrets.token_hex(4)}:"), 0.3
    record, frame_key = keys.stream("cam1"), keys.stream_frame("cam1")
    live_redis.hset(record, mapping={"status": '"live"'})
    store = EvidenceStore(LocalStorage(tmp_path), live_redis, keys, EvidenceSource("stream", "cam1", "o1"), 64, 3600)
    evidence = StreamEvidence(store, WorkerSettings(key_prefix=keys.prefix, stream_snapshot_every_s=every))
    evidence.attach(SimpleNamespace(packet_tap=None))  # no packets: only the thread
    written: dict[float, float] = {}

    def three_written() -> bool:
        at, source_s = live_redis.hmget(frame_key, ["at", "source_s"])
        if at is not None:
            written[float(at)] = float(source_s)
        return len(written) >= 3

    try:
        _feed(evidence, 10.0, three_written)  # about 0.3 s apart: a loaded machine only spaces them more
        times = sorted(written)
        assert len(times) == 3, written
        assert all(later - earlier >= every - 0.01 for earlier, later in pairwise(times)), times
        assert written[times[-1]] > written[times[0]]  # the newest frame each time, not the first one kept
        assert 0 < live_redis.ttl(frame_key) <= 30  # max(3 x every, 30): a stopped stream's frame expires
        picture = Image.open(io.BytesIO(live_redis.hget(frame_key, "jpeg")))
        assert picture.format == "JPEG" and picture.size == (64, 48)
        assert live_redis.register_script(DELETE)(keys=keys.stream_script_keys("cam1", "o1"),
                                                  args=["cam1", keys.stream_control])
        assert not live_redis.exists(frame_key)
        _feed(evidence, 2 * every + 0.3)
        assert not live_redis.exists(frame_key)  # deleted: the keeper writes no frame again
    finally:
        evidence.close()
        live_redis.delete(record, frame_key)


def test_a_stopped_streams_keeper_removes_its_latest_frame(live_redis, tmp_path) -> None:
    keys = Keys(f"test-frame-{secrets.token_hex(4)}:")
    record, frame_key = keys.stream("cam2"), keys.stream_frame("cam2")
    live_redis.hset(record, mapping={"status": '"live"'})
    store = EvidenceStore(LocalStorage(tmp_path), live_redis, keys, EvidenceSource("stream", "cam2", "o1"), 64, 3600)
    evidence = StreamEvidence(store, WorkerSettings(key_prefix=keys.prefix, stream_snapshot_every_s=0.3))
    evidence.attach(SimpleNamespace(packet_tap=None))
    try:
        _feed(evidence, 10.0, lambda: bool(live_redis.exists(frame_key)))
        assert live_redis.exists(frame_key)
    finally:
        evidence.close()  # the stream stopped: the page shows its latest event's snapshot instead
        assert not live_redis.exists(frame_key)
        live_redis.delete(record, frame_key)
