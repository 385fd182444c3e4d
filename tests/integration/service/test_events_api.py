"""The event history API against the machine's Redis: stream and job events in one shape, newest first; stable
cursor pages under inserts; filters; per-key visibility; verdicts (idempotent, counted, withdrawn); a deleted job's
events go with it; the score curve around an event."""

from __future__ import annotations

import json
import time
import uuid
from types import SimpleNamespace
from typing import Any

from service.store import owner_id
from vad.jobstate import JobRecord, JobStatus
from vad.keys import Keys
from workers.runtime.history import index_job_events
from workers.runtime.stream_owner import FencedWriter, claim

A, B = {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}


def _keys(client) -> Keys:
    return Keys(client.app.state.settings.key_prefix)


def add_job(client, events: list[dict[str, Any]], finished_at: float, key: str = "key-a",
            name: str = "yard.mp4") -> str:
    """A finished job of ``key`` and its events, indexed as the worker does when the job ends."""
    conn, keys = client.app.state.store.redis, _keys(client)
    job_id = uuid.uuid4().hex[:12]
    record = JobRecord(id=job_id, owner=owner_id(key), status=JobStatus.finished, filename=name,
                       finished_at=finished_at)
    conn.hset(keys.job(job_id), mapping=record.to_redis())
    n = 40
    timeline = {"start_s": [i * 0.5 for i in range(n)], "end_s": [(i + 1) * 0.5 for i in range(n)],
                "score": [round(i / n, 3) for i in range(n)], "class_probs": [[1.0, 0.0]] * n}
    conn.set(keys.result(job_id), json.dumps({"timeline": timeline, "events": events}))
    ctx = SimpleNamespace(redis=conn, keys=keys, settings=SimpleNamespace(result_ttl_s=3600))
    assert index_job_events(ctx, record, json.dumps({"events": events}), finished_at) == len(events)
    return job_id


def job_event(cls: str = "fighting", peak: float = 0.9, start: float = 2.0) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "class": cls, "class_prob": 0.7, "start_s": start, "end_s": start + 1.5,
            "peak_score": peak, "mean_score": peak - 0.1}


def live_event(event_id: str, opened_at: float, end_s: float | None = None) -> dict[str, Any]:
    return {"id": event_id, "class": "fighting", "class_prob": 0.6, "start_s": 3.0, "end_s": end_s,
            "peak_score": 0.95, "mean_score": 0.8, "first_index": 3, "last_index": 5, "opened_at": opened_at,
            "closed_at": None if end_s is None else opened_at + 4}


def stream_with_event(client, opened_at: float) -> tuple[str, str, FencedWriter]:
    """A stream of key A whose owner opened and closed one event (through the owner's fenced writes)."""
    created = client.post("/v1/streams", json={"url": "rtsp://127.0.0.1:8554/cam", "name": "Front door",
                                               "threshold": 0.6}, headers=A)
    assert created.status_code == 201, created.text
    stream_id = created.json()["id"]
    settings, conn, keys = client.app.state.settings, client.app.state.store.redis, _keys(client)
    lease = claim(conn, keys, stream_id, owner_id("key-a"), "w1", settings)
    assert lease is not None
    writer = FencedWriter(conn, keys, lease, settings)
    event_id = str(uuid.uuid4())
    assert writer.event("open", live_event(event_id, opened_at), "")
    return stream_id, event_id, writer


def listed(client, headers: dict[str, str] = A, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/events", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_stream_and_job_events_share_one_shape_newest_first_and_per_key(app_client) -> None:
    job_events = [job_event(start=2.0), job_event("shooting", 0.7, start=9.0)]
    job_id = add_job(app_client, job_events, finished_at=1_700_000_100.0)
    stream_id, live_id, writer = stream_with_event(app_client, opened_at=1_700_000_200.0)
    opened = listed(app_client)["events"]
    assert opened[0]["id"] == live_id and opened[0]["state"] == "open" and opened[0]["end_s"] is None
    assert writer.event("close", live_event(live_id, 1_700_000_200.0, end_s=7.5), "scores fell")
    page = listed(app_client)
    assert page["next_cursor"] is None
    events = page["events"]
    assert [e["id"] for e in events] == [live_id, *sorted(e["id"] for e in job_events)[::-1]]
    live, job = events[0], events[1]
    assert set(live) == set(job)  # one shape
    assert live["source"] == "stream" and live["source_id"] == stream_id and live["source_name"] == "Front door"
    assert live["state"] == "closed" and live["end_s"] == 7.5 and live["closed_at"] == 1_700_000_204.0
    assert live["threshold"] == 0.6 and live["verdict"] is None and live["owner"] == owner_id("key-a")
    assert live["links"]["clip"] == f"/v1/events/{live_id}/clip.mp4"
    assert live["links"]["source"] == f"/v1/streams/{stream_id}"
    assert job["source"] == "job" and job["source_id"] == job_id and job["source_name"] == "yard.mp4"
    assert job["opened_at"] == job["closed_at"] == 1_700_000_100.0 and job["state"] == "closed"
    assert app_client.get(f"/v1/events/{live_id}", headers=A).json() == live
    assert listed(app_client, B)["events"] == []
    other = app_client.get(f"/v1/events/{live_id}", headers=B)
    assert other.status_code == 404 and other.json()["code"] == "event_not_found"
    assert app_client.get("/v1/events").status_code == 401


def test_pages_are_stable_under_inserts_and_filters_select(app_client) -> None:
    originals = [job_event("fighting" if i % 2 else "shooting", 0.5 + i / 20, start=float(i)) for i in range(7)]
    for i, event in enumerate(originals):
        add_job(app_client, [event], finished_at=1_700_000_000.0 + i)
    expected = [e["id"] for e in originals][::-1]
    seen: list[str] = []
    cursor = None
    for step in range(10):
        page = listed(app_client, limit=3, **({"cursor": cursor} if cursor else {}))
        seen += [e["id"] for e in page["events"]]
        add_job(app_client, [job_event()], finished_at=1_700_000_100.0 + step)  # newer events keep arriving
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    assert [e["class"] for e in listed(app_client, **{"class": "shooting"}, until=1_700_000_050)["events"]] == [
        "shooting"] * 4
    assert [e["id"] for e in listed(app_client, min_score=0.7, until=1_700_000_050)["events"]] == expected[:3]
    assert [e["id"] for e in listed(app_client, since=1_700_000_002, until=1_700_000_004)["events"]] == [
        originals[4]["id"], originals[3]["id"], originals[2]["id"]]
    one = listed(app_client, job_id=listed(app_client, until=1_700_000_000)["events"][0]["source_id"])["events"]
    assert [e["id"] for e in one] == [originals[0]["id"]]
    assert listed(app_client, stream_id="a", job_id=one[0]["source_id"])["events"] == []  # filters combine
    for params in ({"cursor": "not-a-cursor"}, {"cursor": "0" * 15 + "a:b"}, {"limit": 0}, {"limit": 201},
                   {"verdict": "maybe"}, {"min_score": 2}):
        response = app_client.get("/v1/events", params=params, headers=A)
        assert response.status_code == 422, (params, response.text)


def test_verdicts_are_idempotent_counted_filtered_and_withdrawn(app_client) -> None:
    events = [job_event(), job_event()]
    add_job(app_client, events, finished_at=1_700_000_000.0)
    target = events[0]["id"]
    url = f"/v1/events/{target}/verdict"
    first = app_client.put(url, json={"verdict": "false_alarm", "note": "a flag in the wind"}, headers=A)
    assert first.status_code == 200, first.text
    verdict = first.json()["verdict"]
    assert verdict["verdict"] == "false_alarm" and verdict["by"] == owner_id("key-a") and verdict["at"] > 0
    again = app_client.put(url, json={"verdict": "false_alarm", "note": "a flag in the wind"}, headers=A)
    assert again.status_code == 200 and again.json() == first.json()

    def counted() -> dict[str, float]:
        text = app_client.get("/metrics").text
        return {line.split('"')[1]: float(line.split()[-1]) for line in text.splitlines()
                if line.startswith("vad_verdicts_total{")}

    assert counted() == {"true_alert": 0.0, "false_alarm": 1.0, "withdrawn": 0.0}
    assert [e["id"] for e in listed(app_client, verdict="false_alarm")["events"]] == [target]
    assert [e["id"] for e in listed(app_client, verdict="none")["events"]] == [events[1]["id"]]
    assert [e["id"] for e in listed(app_client, reviewed="true")["events"]] == [target]
    assert [e["id"] for e in listed(app_client, reviewed="false")["events"]] == [events[1]["id"]]
    assert listed(app_client, reviewed="false", verdict="false_alarm")["events"] == []
    assert app_client.put(url, json={"verdict": "true_alert"}, headers=A).json()["verdict"]["verdict"] == "true_alert"
    assert app_client.put(url, json={"verdict": "true_alert"}, headers=B).status_code == 404
    assert app_client.put(url, json={"verdict": "maybe"}, headers=A).status_code == 422
    assert app_client.put("/v1/events/nope/verdict", json={"verdict": "true_alert"}, headers=A).status_code == 404
    assert app_client.delete(url, headers=B).status_code == 404
    assert app_client.delete(url, headers=A).status_code == 204
    assert app_client.delete(url, headers=A).status_code == 204
    assert app_client.get(f"/v1/events/{target}", headers=A).json()["verdict"] is None
    assert counted() == {"true_alert": 1.0, "false_alarm": 1.0, "withdrawn": 1.0}


def test_a_deleted_job_takes_its_events_and_verdicts_along(app_client) -> None:
    events = [job_event(), job_event()]
    job_id = add_job(app_client, events, finished_at=1_700_000_000.0)
    app_client.put(f"/v1/events/{events[0]['id']}/verdict", json={"verdict": "true_alert"}, headers=A)
    assert app_client.delete(f"/v1/jobs/{job_id}", headers=A).status_code == 204
    assert listed(app_client)["events"] == []
    assert app_client.get(f"/v1/events/{events[0]['id']}", headers=A).status_code == 404
    conn, keys = app_client.app.state.store.redis, _keys(app_client)
    assert not conn.exists(keys.events_of_source("job", job_id)) and conn.zcard(keys.events_reviewed) == 0
    assert conn.zcard(keys.events_of_owner(owner_id("key-a"))) == 0


def test_the_score_curve_covers_the_event_and_ten_seconds_around_it(app_client) -> None:
    event = job_event(start=12.0)  # 12.0 .. 13.5 s; the job's snippets are 0.5 s long, 0 .. 20 s
    add_job(app_client, [event], finished_at=1_700_000_000.0)
    curve = app_client.get(f"/v1/events/{event['id']}/scores", headers=A).json()
    assert curve["start_s"][0] == 2.0 and curve["end_s"][-1] == 20.0 and len(curve["score"]) == 36
    _, live_id, writer = stream_with_event(app_client, opened_at=time.time())
    for i in range(60):
        writer.score({}, {"index": i, "start_s": i * 0.5, "end_s": (i + 1) * 0.5, "score": 0.1, "class_probs": "[]",
                          "at": 0, "lag_s": "", "token": writer.lease.token})
    live = app_client.get(f"/v1/events/{live_id}/scores", headers=A).json()
    assert live["event_id"] == live_id and live["start_s"] == [i * 0.5 for i in range(60)]  # open: up to now
    assert app_client.get(f"/v1/events/{live_id}/scores", headers=B).status_code == 404


def test_a_deleted_stream_takes_its_events_verdicts_and_features_along(app_client) -> None:
    from vad.storage.features import FeatureStore

    opened_at = time.time()
    stream_id, live_id, writer = stream_with_event(app_client, opened_at=opened_at)
    assert writer.event("close", live_event(live_id, opened_at, end_s=7.5), "scores fell")
    features = FeatureStore(app_client.app.state.store.storage)
    features.put(live_id, b"saved when it closed")
    assert app_client.put(f"/v1/events/{live_id}/verdict", json={"verdict": "true_alert"}, headers=A).status_code == 200
    assert app_client.delete(f"/v1/streams/{stream_id}", headers=B).status_code == 404  # another key's: untouched
    stopped = app_client.post(f"/v1/streams/{stream_id}/stop", headers=A)
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    assert [e["id"] for e in listed(app_client, stream_id=stream_id)["events"]] == [live_id]  # a stop keeps them
    assert features.get(live_id) == b"saved when it closed"
    assert app_client.delete(f"/v1/streams/{stream_id}", headers=A).status_code == 204
    assert listed(app_client)["events"] == [] and features.get(live_id) is None
    assert app_client.get(f"/v1/events/{live_id}", headers=A).status_code == 404
    assert app_client.get(f"/v1/streams/{stream_id}", headers=A).status_code == 404  # the stream is gone too
    assert app_client.app.state.store.redis.zcard(_keys(app_client).events_reviewed) == 0


def put_snapshot(client, stream_id: str, event_id: str, data: bytes, tmp_path) -> None:
    """Evidence of a stream event with a snapshot only, written as the worker writes it (the file, then meta.json)."""
    from vad.evidence import EvidenceMeta, evidence_key

    storage = client.app.state.store.storage
    snapshot, meta = tmp_path / f"{event_id}.jpg", tmp_path / f"{event_id}.json"
    snapshot.write_bytes(data)
    meta.write_text(EvidenceMeta(event_id=event_id, source="stream", source_id=stream_id, owner=owner_id("key-a"),
                                 start_s=3, end_s=7.5, sizes={"snapshot.jpg": len(data)}).model_dump_json())
    storage.put_file(evidence_key(event_id, "snapshot.jpg"), snapshot, "image/jpeg")
    storage.put_file(evidence_key(event_id, "meta.json"), meta, "application/json")


def test_a_streams_latest_snapshot_is_its_newest_events_that_has_one(app_client, tmp_path) -> None:
    opened_at = time.time() - 60
    stream_id, first, writer = stream_with_event(app_client, opened_at=opened_at)
    url = f"/v1/streams/{stream_id}/snapshot.jpg"
    assert app_client.get(url, headers=A).status_code == 404  # open, no evidence yet
    assert writer.event("close", live_event(first, opened_at, end_s=7.5), "scores fell")
    put_snapshot(app_client, stream_id, first, b"\xff\xd8\xff" + bytes(300), tmp_path)
    second = str(uuid.uuid4())
    assert writer.event("open", live_event(second, opened_at + 30), "")  # newer, its evidence not written yet
    answer = app_client.get(url, headers=A)
    assert answer.status_code == 200 and answer.headers["x-event-id"] == first
    assert answer.headers["content-type"] == "image/jpeg" and answer.headers["cache-control"] == "no-cache"
    assert answer.content == b"\xff\xd8\xff" + bytes(300)
    assert app_client.get(url, headers={**A, "Range": "bytes=0-2"}).content == b"\xff\xd8\xff"
    put_snapshot(app_client, stream_id, second, b"\xff\xd8\xff" + bytes(100), tmp_path)
    newest = app_client.get(url, headers=A)
    assert newest.headers["x-event-id"] == second and newest.headers["x-snapshot"] == "event"
    assert app_client.get(url, headers=B).status_code == 404  # another key's stream
    assert app_client.get(url).status_code == 401


def test_a_running_streams_snapshot_is_its_latest_frame_until_the_stream_is_deleted(app_client, tmp_path) -> None:
    from vad.streamlua import FRAME

    stream_id, event_id, writer = stream_with_event(app_client, opened_at=time.time() - 60)
    assert writer.event("close", live_event(event_id, time.time() - 60, end_s=7.5), "scores fell")
    put_snapshot(app_client, stream_id, event_id, b"\xff\xd8\xff" + bytes(50), tmp_path)
    conn, keys, url = app_client.app.state.store.redis, _keys(app_client), f"/v1/streams/{stream_id}/snapshot.jpg"
    frame = b"\xff\xd8\xff" + bytes(range(200))
    assert conn.register_script(FRAME)(keys=keys.stream_script_keys(stream_id, owner_id("key-a")),
                                       args=[frame, "1700000123.4567", "42.5", 60]) == 1  # as the worker writes it
    live = app_client.get(url, headers=A)
    assert live.status_code == 200 and live.content == frame and live.headers["content-type"] == "image/jpeg"
    assert live.headers["x-snapshot"] == "live" and live.headers["x-frame-at"] == "1700000123.457"
    assert live.headers["cache-control"] == "no-cache" and "x-event-id" not in live.headers
    part = app_client.get(url, headers={**A, "Range": "bytes=3-5"})
    assert part.status_code == 206 and part.content == bytes([0, 1, 2])
    assert part.headers["content-range"] == f"bytes 3-5/{len(frame)}"
    outside = app_client.get(url, headers={**A, "Range": "bytes=999-"})
    assert outside.status_code == 416 and outside.headers["content-range"] == f"bytes */{len(frame)}"
    assert app_client.get(url, headers=B).status_code == 404  # another key's stream: its frame stays hidden
    conn.delete(keys.stream_frame(stream_id))  # expired (the stream stopped a while ago): the event's snapshot
    assert app_client.get(url, headers=A).headers["x-snapshot"] == "event"
    assert conn.register_script(FRAME)(keys=keys.stream_script_keys(stream_id, owner_id("key-a")),
                                       args=[frame, "1700000130", "49.5", 60]) == 1
    assert app_client.delete(f"/v1/streams/{stream_id}", headers=A).status_code == 204
    assert not conn.exists(keys.stream_frame(stream_id))
    assert conn.register_script(FRAME)(keys=keys.stream_script_keys(stream_id, owner_id("key-a")),
                                       args=[frame, "1700000140", "59.5", 60]) == 0  # a late write brings none back
    assert not conn.exists(keys.stream_frame(stream_id))
    assert app_client.get(url, headers=A).status_code == 404
