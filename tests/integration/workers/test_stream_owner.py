"""Leases and fencing tokens of streams against the machine's Redis (the Lua of vad.streamlua): one owner at a time,
a stale owner's writes are refused and leave nothing, an event is closed and its webhook queued exactly once."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator

import pytest

from vad.keys import Keys
from vad.settings import QueueSettings
from vad.streams import StreamRecord, StreamState
from workers.runtime.stream_owner import FencedWriter, Lease, claim

EVENT = {"id": "ev-1", "class": "fighting", "class_prob": 0.7, "start_s": 3.0, "end_s": None, "peak_score": 0.9,
         "mean_score": 0.8, "first_index": 5, "last_index": 5, "opened_at": 1.0, "closed_at": None}


@pytest.fixture
def env(live_redis) -> Iterator[tuple]:
    prefix = f"test-{secrets.token_hex(4)}:"
    settings = QueueSettings(key_prefix=prefix, stream_lease_ttl_s=5, stream_allowlist=["127.0.0.1"])
    keys = Keys(prefix)
    yield live_redis, keys, settings
    found = list(live_redis.scan_iter(f"{prefix}*"))
    if found:
        live_redis.delete(*found)


def create(conn, keys: Keys, callback: str | None = "http://hooks.example/h") -> StreamRecord:
    record = StreamRecord(id=secrets.token_hex(4), owner="k1", url="rtsp://u:p@127.0.0.1/x",
                          display_url="rtsp://***@127.0.0.1/x", callback_url=callback)
    conn.hset(keys.stream(record.id), mapping=record.to_redis())
    conn.set(keys.stream_fence(record.id), 0)
    conn.zadd(keys.streams_active, {record.id: record.created_at})
    conn.zadd(keys.streams_of_owner("k1"), {record.id: "+inf"})
    return record


def read(conn, keys: Keys, stream_id: str) -> StreamRecord:
    record = StreamRecord.read(stream_id, conn.hgetall(keys.stream(stream_id)))
    assert record is not None
    return record


def score(writer: FencedWriter, index: int, value: float = 0.2) -> str | None:
    return writer.score({"last_score": value, "last_end_s": index * 0.5 + 0.5},
                        {"index": index, "start_s": index * 0.5, "end_s": index * 0.5 + 0.5, "score": value,
                         "class_probs": "[1.0]", "at": time.time(), "token": writer.lease.token})


def test_one_owner_at_a_time_and_a_stale_owners_writes_are_refused(env) -> None:
    conn, keys, settings = env
    record = create(conn, keys)
    lost: list[str] = []
    first = claim(conn, keys, record.id, "k1", "w1", settings)
    assert first is not None and first.token == 1
    assert claim(conn, keys, record.id, "k1", "w2", settings) is None  # the lease is held
    old = FencedWriter(conn, keys, first, settings, on_lost=lost.append)
    assert old.status(status="live", fps=25.0) and score(old, 0) and old.event("open", EVENT, "")
    assert read(conn, keys, record.id).status == StreamState.live

    conn.delete(keys.stream_lease(record.id))  # the lease expires (the owner stalled)
    second = claim(conn, keys, record.id, "k1", "w2", settings)
    assert second is not None and second.token == 2
    state = read(conn, keys, record.id)
    assert state.status == StreamState.connecting and state.worker == "w2" and "taken over from w1" in state.reason
    assert state.open_event is None and state.events_closed == 1  # w1's open event closed by the takeover

    timeline, events = conn.xlen(keys.stream_timeline(record.id)), conn.xlen(keys.stream_events(record.id))
    assert score(old, 1) is None and old.event("close", EVENT, "") is None
    assert not old.status(status="failed") and not old.renew()
    assert old.refused == "fenced" and lost == ["fenced"]
    assert (conn.xlen(keys.stream_timeline(record.id)), conn.xlen(keys.stream_events(record.id))) == (timeline, events)
    assert read(conn, keys, record.id).status == StreamState.connecting  # nothing of w1 landed

    closes = [f for _, f in conn.xrange(keys.stream_events(record.id)) if f[b"kind"] == b"close"]
    assert len(closes) == 1 and closes[0][b"reason"] == b"owner lost" and closes[0][b"token"] == b"2"
    assert json.loads(closes[0][b"event"])["end_s"] == 0.5  # the last scored snippet's end
    assert len(conn.lrange(keys.stream_webhooks, 0, -1)) == 2  # open (w1) and close (takeover), each once


def test_an_expired_lease_refuses_writes_before_anyone_takes_over(env) -> None:
    conn, keys, settings = env
    record = create(conn, keys)
    lease = claim(conn, keys, record.id, "k1", "w1", settings)
    assert lease is not None
    writer = FencedWriter(conn, keys, lease, settings)
    conn.delete(keys.stream_lease(record.id))
    assert score(writer, 0) is None and writer.refused == "lease lost"
    assert conn.xlen(keys.stream_timeline(record.id)) == 0


def test_renewal_keeps_the_lease_and_release_queues_the_stream_for_another_worker(env) -> None:
    conn, keys, settings = env
    record = create(conn, keys)
    lease = claim(conn, keys, record.id, "k1", "w1", settings)
    assert lease is not None
    writer = FencedWriter(conn, keys, lease, settings)
    conn.pexpire(keys.stream_lease(record.id), 100)
    assert writer.renew() and conn.pttl(keys.stream_lease(record.id)) > 4000
    assert writer.release("its worker stopped")
    state = read(conn, keys, record.id)
    assert state.status == StreamState.queued and state.worker is None
    assert claim(conn, keys, record.id, "k1", "w2", settings) is not None


def owned_with_an_open_event(conn, keys: Keys, settings: QueueSettings) -> tuple[StreamRecord, Lease, FencedWriter]:
    """A stream claimed by w1, which scored a snippet and opened an event."""
    record = create(conn, keys)
    lease = claim(conn, keys, record.id, "k1", "w1", settings)
    assert lease is not None
    writer = FencedWriter(conn, keys, lease, settings)
    assert score(writer, 0) and writer.event("open", EVENT, "")
    return record, lease, writer


def control_message(pubsub) -> bytes | None:
    """The next message on the control channel (within 2 s), as the owner's listener gets it."""
    deadline, message = time.monotonic() + 2, None
    while message is None and time.monotonic() < deadline:  # the subscription's confirmation reads as None first
        message = pubsub.get_message(timeout=0.5)
    pubsub.close()
    return None if message is None else message["data"]


def test_the_api_stop_fences_the_owner_off_and_keeps_only_the_retention(env) -> None:
    from service.settings import ServiceSettings
    from service.streams import StreamStore

    conn, keys, settings = env
    record, _, writer = owned_with_an_open_event(conn, keys, settings)
    pubsub = conn.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.stream_control)
    store = StreamStore(conn, ServiceSettings(key_prefix=keys.prefix, stream_retention_s=600))
    store.stop(read(conn, keys, record.id))
    assert control_message(pubsub) == record.id.encode()  # the owner is told at once
    state = read(conn, keys, record.id)
    assert state.status == StreamState.stopped and state.open_event is None and state.events_closed == 1
    assert score(writer, 1) is None and writer.refused == "fenced"
    left = {k.decode() for k in conn.scan_iter(f"{keys.prefix}*")}
    kept = (keys.stream(record.id), keys.stream_fence(record.id), keys.stream_timeline(record.id),
            keys.stream_events(record.id), keys.events_of_source("stream", record.id))
    history = {keys.event(EVENT["id"]), keys.events_of_owner("k1")}  # the event history keeps it (vad/events.py)
    assert left == {*kept, *history, keys.streams_of_owner("k1"), keys.stream_webhooks}
    for key in kept:
        assert 0 < conn.ttl(key) <= 600, key
    assert 0 < conn.ttl(keys.event(EVENT["id"])) <= settings.stream_retention_s
    assert conn.zscore(keys.streams_of_owner("k1"), record.id) <= time.time() + 600  # listed until the retention ends
    assert claim(conn, keys, record.id, "k1", "w2", settings) is None  # a stopped stream is never claimed again
    assert conn.zcard(keys.streams_active) == 0


def stream_keys(conn, keys: Keys, stream_id: str) -> set[str]:
    """Every key of one stream (record, lease, fence, timeline, events)."""
    return {k.decode() for k in conn.scan_iter(f"{keys.stream(stream_id)}*")}


def test_the_api_delete_fences_the_owner_off_and_no_late_write_brings_a_key_back(env) -> None:
    """DELETE removes every key of the stream and tells its owner; whatever the old owner sends afterwards (each
    script, from a writer that has not yet been refused), a claim that raced it and a second stop or delete are all
    refused, and none of them recreates a key."""
    from service.exceptions import StreamNotFound
    from service.settings import ServiceSettings
    from service.streams import StreamStore

    conn, keys, settings = env
    record, lease, _ = owned_with_an_open_event(conn, keys, settings)
    assert stream_keys(conn, keys, record.id) == {keys.stream(record.id), keys.stream_lease(record.id),
                                                  keys.stream_fence(record.id), keys.stream_timeline(record.id),
                                                  keys.stream_events(record.id)}
    pubsub = conn.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.stream_control)
    store = StreamStore(conn, ServiceSettings(key_prefix=keys.prefix, stream_retention_s=600))
    store.delete(read(conn, keys, record.id))
    assert control_message(pubsub) == record.id.encode()  # the owner is told at once
    assert stream_keys(conn, keys, record.id) == set()
    assert conn.zscore(keys.streams_active, record.id) is None
    assert conn.zscore(keys.streams_of_owner("k1"), record.id) is None

    late = [lambda w: w.status(status="live", fps=25.0), lambda w: score(w, 1),
            lambda w: w.event("close", EVENT, "scores fell"), lambda w: w.finish(StreamState.stopped, "the end")]
    for write in late:  # a fresh writer each time: every script runs (a refused writer sends nothing more)
        fresh = FencedWriter(conn, keys, lease, settings)
        assert not write(fresh) and fresh.refused == "fenced"
    assert not FencedWriter(conn, keys, lease, settings).renew()
    assert not FencedWriter(conn, keys, lease, settings).release("its worker stopped")
    assert claim(conn, keys, record.id, "k1", "w2", settings) is None
    store.stop(record)
    with pytest.raises(StreamNotFound):
        store.delete(record)
    assert stream_keys(conn, keys, record.id) == set()
    assert conn.zscore(keys.streams_active, record.id) is None
    assert conn.zscore(keys.streams_of_owner("k1"), record.id) is None


def test_an_owner_whose_record_is_gone_is_refused_even_with_its_lease_and_fence(env) -> None:
    """The record is what a write needs: without it (removed by anyone), the owner's token and lease are not
    enough, and no write creates a record, timeline or events key."""
    conn, keys, settings = env
    record = create(conn, keys)
    lease = claim(conn, keys, record.id, "k1", "w1", settings)
    assert lease is not None
    conn.delete(keys.stream(record.id))
    for write in (lambda w: w.status(status="live"), lambda w: score(w, 0), lambda w: w.event("open", EVENT, ""),
                  lambda w: w.finish(StreamState.stopped, "the end")):
        fresh = FencedWriter(conn, keys, lease, settings)
        assert not write(fresh) and fresh.refused == "gone"
    assert stream_keys(conn, keys, record.id) == {keys.stream_lease(record.id), keys.stream_fence(record.id)}


def test_finish_closes_the_open_event_and_retires_the_stream(env) -> None:
    conn, keys, settings = env
    record = create(conn, keys, callback=None)
    lease = claim(conn, keys, record.id, "k1", "w1", settings)
    assert lease is not None
    writer = FencedWriter(conn, keys, lease, settings)
    assert writer.event("open", EVENT, "")
    assert writer.finish(StreamState.failed, "the source could not be opened")
    state = read(conn, keys, record.id)
    assert state.status == StreamState.failed and state.reason == "the source could not be opened"
    assert state.events_closed == 1 and not conn.exists(keys.stream_lease(record.id))
    assert conn.zcard(keys.streams_active) == 0
    assert conn.llen(keys.stream_webhooks) == 0  # no callback URL: no webhook queued


def test_the_sink_saves_a_closing_events_features_and_says_where_they_start(env, tmp_path) -> None:
    import io

    import numpy as np

    from vad.storage import LocalStorage
    from vad.storage.features import FeatureStore
    from workers.runtime.stream_owner import RedisSink
    from workers.stream.event_tracker import EventUpdate, LiveEvent

    conn, keys, settings = env
    record = create(conn, keys, callback=None)
    lease = claim(conn, keys, record.id, "k1", "w1", settings)
    assert lease is not None
    store = FeatureStore(LocalStorage(tmp_path))
    sink = RedisSink(FencedWriter(conn, keys, lease, settings), record, store)
    event = LiveEvent(id="ev-2", class_name="fighting", class_prob=0.7, start_s=3.0, end_s=None, peak_score=0.9,
                      mean_score=0.8, first_index=5, last_index=5, opened_at=time.time())
    window = np.arange(12, dtype=np.float32).reshape(6, 2)
    sink.event(EventUpdate("open", event, features=(window, 1)))  # an open saves nothing
    assert store.get("ev-2") is None
    closed = LiveEvent(**{**event.__dict__, "end_s": 3.5, "last_index": 6, "closed_at": time.time()})
    sink.event(EventUpdate("close", closed, "scores fell", features=(window, 1)))
    assert np.array_equal(np.load(io.BytesIO(store.get("ev-2") or b"")), window)
    entries = conn.xrange(keys.stream_events(record.id))
    assert [json.loads(f[b"event"]).get("features_from_index") for _, f in entries] == [None, 1]
    assert json.loads(conn.hget(keys.event("ev-2"), "event"))["features_from_index"] == 1


def test_the_owner_keeps_the_stream_clock_in_the_record_and_a_new_owner_continues_it(env) -> None:
    from workers.runtime.stream_owner import RedisSink
    from workers.runtime.streams import resumed_clock
    from workers.stream.event_tracker import EventUpdate, LiveEvent
    from workers.stream.live_source import StreamClock
    from workers.stream.online import SnippetScore
    from workers.stream.runner import StreamStatus

    conn, keys, settings = env
    record = create(conn, keys)
    assert resumed_clock(record) is None  # never read: its clock starts at its first frame
    first = claim(conn, keys, record.id, "k1", "w1", settings)
    assert first is not None
    sink = RedisSink(FencedWriter(conn, keys, first, settings), record)
    origin = time.time() - 55.0
    sink.status(StreamStatus(state="live", reason=None, since=time.time(), url=record.display_url,
                             clock=StreamClock(origin)))
    start_s, end_s = 54.36, 55.0
    sink.score(SnippetScore(index=104, start_s=start_s, end_s=end_s, score=0.9, class_probs=(0.1, 0.9),
                            scored_at=time.time(), start_at=origin + start_s))
    sink.event(EventUpdate("open", LiveEvent(
        id="ev-9", class_name="fighting", class_prob=0.9, start_s=start_s, end_s=None, peak_score=0.9,
        mean_score=0.9, first_index=104, last_index=104, opened_at=time.time(), start_at=origin + start_s)))

    conn.delete(keys.stream_lease(record.id))  # w1 dies: its lease expires
    assert claim(conn, keys, record.id, "k1", "w2", settings) is not None
    state = read(conn, keys, record.id)
    assert (state.last_index, state.last_end_s, state.clock_origin_at) == (104, end_s, origin)
    assert resumed_clock(state) == StreamClock(origin_at=origin, next_index=105, last_end_s=end_s)
    closed = json.loads(conn.xrange(keys.stream_events(record.id))[-1][1][b"event"])  # by the takeover: owner lost
    assert closed["end_s"] == end_s and closed["start_at"] == pytest.approx(origin + start_s, abs=1e-3)
    assert closed["end_at"] == pytest.approx(origin + end_s, abs=1e-3)  # Redis' cjson keeps 14 digits: 0.1 ms
