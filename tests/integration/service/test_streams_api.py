"""The streams API against the machine's Redis: create, list, read, stop, delete; per-key visibility; refusals (422); no
credentials in any answer; events as JSON (since=) and as Server-Sent Events resuming from Last-Event-ID with
nothing lost or repeated; the timeline between two times."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from vad.keys import Keys
from workers.runtime.stream_owner import FencedWriter, claim

URL = "rtsp://admin:hunter2@127.0.0.1:8554/cam?token=s3cret"


A, B = {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}


def create(client, **body: Any) -> dict:
    response = client.post("/v1/streams", json={"url": URL, **body}, headers=A)
    assert response.status_code == 201, response.text
    assert response.headers["location"].endswith(f"/v1/streams/{response.json()['id']}")
    return response.json()


def owner_writer(client, stream_id: str) -> FencedWriter:
    """Claim the stream as a worker would, and the writer its runner would use."""
    settings = client.app.state.settings
    keys = Keys(settings.key_prefix)
    conn = client.app.state.store.redis
    owner = json.loads(conn.hget(keys.stream(stream_id), "owner"))
    lease = claim(conn, keys, stream_id, owner, "w1", settings)
    assert lease is not None
    return FencedWriter(conn, keys, lease, settings)


def event(n: int) -> dict:
    return {"id": f"ev-{n}", "class": "fighting", "class_prob": 0.6, "start_s": float(n), "end_s": None,
            "peak_score": 0.9, "mean_score": 0.8, "first_index": n, "last_index": n, "opened_at": 1.0,
            "closed_at": None}


def test_create_read_list_and_stop_a_stream_of_one_key_only(app_client) -> None:
    stream = create(app_client, name="front door", threshold=0.4)
    assert stream["status"] == "queued" and stream["queue_position"] == 0 and stream["name"] == "front door"
    assert stream["url"] == "rtsp://***@127.0.0.1:8554/cam?token=***"
    got = app_client.get(f"/v1/streams/{stream['id']}", headers=A).json()
    assert got["status"] == "queued" and got["reason"] and got["threshold"] == 0.4
    assert [s["id"] for s in app_client.get("/v1/streams", headers=A).json()["streams"]] == [stream["id"]]
    assert app_client.get("/v1/streams", headers=B).json()["streams"] == []
    for method, rest in (("GET", ""), ("DELETE", ""), ("POST", "/stop")):
        other = app_client.request(method, f"/v1/streams/{stream['id']}{rest}", headers=B)
        assert other.status_code == 404 and other.json()["code"] == "stream_not_found"
    assert app_client.get(f"/v1/streams/{stream['id']}").status_code == 401
    stop = app_client.post(f"/v1/streams/{stream['id']}/stop", headers=A)
    assert stop.status_code == 200, stop.text
    stopped = stop.json()
    assert stopped["status"] == "stopped" and stopped["stopped_at"] and stopped["queue_position"] is None
    assert stopped["reason"] == "stopped by its owner" and stopped["id"] == stream["id"]
    assert app_client.get(f"/v1/streams/{stream['id']}", headers=A).json() == stopped  # kept, readable
    again = app_client.post(f"/v1/streams/{stream['id']}/stop", headers=A)  # idempotent: the same stopped stream
    assert again.status_code == 200 and again.json() == stopped
    assert [s["id"] for s in app_client.get("/v1/streams", headers=A).json()["streams"]] == [stream["id"]]
    unknown = app_client.post("/v1/streams/no-such-stream/stop", headers=A)
    assert unknown.status_code == 404 and unknown.json()["code"] == "stream_not_found"


def test_stopping_a_failed_stream_answers_it_as_it_is(app_client) -> None:
    from vad.streams import StreamState

    stream = create(app_client)
    assert owner_writer(app_client, stream["id"]).finish(StreamState.failed, "the source could not be opened")
    failed = app_client.get(f"/v1/streams/{stream['id']}", headers=A).json()
    stop = app_client.post(f"/v1/streams/{stream['id']}/stop", headers=A)
    assert stop.status_code == 200 and stop.json() == failed and failed["status"] == "failed"


def test_delete_removes_the_stream_from_every_route_and_a_second_delete_is_404(app_client) -> None:
    """A running stream with events and scores, one SSE reader open: DELETE stops and removes it; every route of it
    answers 404 afterwards (as a deleted job's do), the reader's stream ends, and no key of it is left in Redis."""
    stream = create(app_client)
    other = create(app_client)
    writer = owner_writer(app_client, stream["id"])
    writer.event("open", event(0), "")
    writer.score({"last_score": 0.9}, {"index": 0, "start_s": 0.0, "end_s": 0.5, "score": 0.9, "at": time.time()})
    base = f"/v1/streams/{stream['id']}"
    settings = app_client.app.state.settings
    conn, keys = app_client.app.state.store.redis, Keys(settings.key_prefix)
    owner = json.loads(conn.hget(keys.stream(stream["id"]), "owner"))
    got: list[dict] = []

    def listen() -> None:
        with app_client.stream("GET", f"{base}/events", headers={**A, "Accept": "text/event-stream"}) as response:
            read_sse(response, got)

    listener = threading.Thread(target=listen)
    listener.start()
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app_client.delete(base, headers=A).status_code == 204
    listener.join(10)
    assert not listener.is_alive(), "the SSE reader of a deleted stream did not end"
    for method, path, kwargs in (("GET", base, {}), ("GET", f"{base}/events", {}),
                                 ("GET", f"{base}/events", {"headers": {"Accept": "text/event-stream"}}),
                                 ("GET", f"{base}/timeline", {}), ("POST", f"{base}/stop", {}),
                                 ("DELETE", base, {})):
        answer = app_client.request(method, path, headers={**A, **kwargs.get("headers", {})})
        assert answer.status_code == 404 and answer.json()["code"] == "stream_not_found", (method, path, answer.text)
    assert [s["id"] for s in app_client.get("/v1/streams", headers=A).json()["streams"]] == [other["id"]]
    assert list(conn.scan_iter(f"{keys.stream(stream['id'])}*")) == []
    assert conn.zscore(keys.streams_active, stream["id"]) is None
    assert conn.zscore(keys.streams_of_owner(owner), stream["id"]) is None
    assert writer.event("close", event(0), "") is None and writer.refused == "fenced"  # its owner is fenced off
    assert list(conn.scan_iter(f"{keys.stream(stream['id'])}*")) == []
    # a stopped stream is deleted the same way
    assert app_client.post(f"/v1/streams/{other['id']}/stop", headers=A).status_code == 200
    assert app_client.delete(f"/v1/streams/{other['id']}", headers=A).status_code == 204
    assert app_client.get(f"/v1/streams/{other['id']}", headers=A).status_code == 404
    assert app_client.get("/v1/streams", headers=A).json()["streams"] == []


@pytest.mark.parametrize(("body", "why"), [
    ({"url": "file:///etc/passwd"}, "not 'file'"), ({"url": "/dev/video0"}, "local paths"),
    ({"url": "rtsp://admin:hunter2@10.0.0.7/x"}, "not in the allow-list"),
    ({"url": "udp://admin:hunter2@192.168.1.20:5000"}, "not in the allow-list"),
    ({"url": "rtsp://admin:hunter2@localhost.invalid/x"}, "does not resolve"),
    ({"url": "rtsp://127.0.0.1/x", "threshold": 2}, "threshold"), ({"url": "rtsp://127.0.0.1/x", "x": 1}, "x"),
    ({"url": "rtsp://127.0.0.1/x", "threshold": False}, "threshold"),
    ({"url": "rtsp://127.0.0.1/x", "callback_url": "http://evil.example/h"}, "allow-list"),
    ({"url": "rtsp://127.0.0.1/x", "transport": "http"}, "transport"),
    ({"url": "rtsp://127.0.0.1/x", "transport": "TCP"}, "transport"),
    ({"url": "rtsp://127.0.0.1/x", "transport": 1}, "transport"),
    ({"url": "udp://admin:hunter2@127.0.0.1:5000", "transport": "tcp"}, "rtsp:// and rtsps:// URLs only"),
    ({"url": "rtsps://127.0.0.1/x", "transport": "udp"}, "over TCP (inside TLS) only"),
])
def test_refused_streams_answer_422_and_never_quote_credentials(app_client, body: dict, why: str) -> None:
    response = app_client.post("/v1/streams", json=body, headers=A)
    assert response.status_code == 422 and why in response.json()["detail"], response.text
    assert "hunter2" not in response.text and "admin" not in response.text


def test_the_rtsp_transport_asked_for_is_kept_and_shown(app_client) -> None:
    for transport in ("tcp", "udp", "auto", None):
        stream = create(app_client, **({} if transport is None else {"transport": transport}))
        assert stream["transport"] == transport  # null: the workers' VAD_STREAM_RTSP_TRANSPORT
        assert app_client.get(f"/v1/streams/{stream['id']}", headers=A).json()["transport"] == transport
    assert create(app_client, url="rtsps://127.0.0.1/x", transport="tcp")["transport"] == "tcp"


@pytest.mark.parametrize("body", [{"url": "rtsp://127.0.0.1/x"}, None, {"x": 1}])
@pytest.mark.parametrize("headers", [A, {}])
def test_streams_cannot_be_created_while_the_allow_list_is_empty(app_client, body: dict | None,
                                                                 headers: dict) -> None:
    """Without an allow-list the document has no ``POST /v1/streams``: it answers as an undocumented method does,
    405 with ``Allow``, whatever the body and the key (not 422 for a missing body, not 401)."""
    app_client.app.state.settings.stream_allowlist = []
    response = app_client.post("/v1/streams", json=body, headers=headers)
    assert response.status_code == 405 and response.json()["code"] == "streams_disabled", response.text
    assert response.headers["allow"] == "GET"
    assert "VAD_STREAM_ALLOWLIST" in response.json()["detail"]


def test_with_streams_off_every_stream_route_answers_as_the_document_says(app_client) -> None:
    """Each method of each stream path: documented ⇔ answered (not 405); a 405 lists the documented methods."""
    app_client.app.state.settings.stream_allowlist = []
    paths = {path: {m.upper() for m in item} for path, item in app_client.get("/openapi.json").json()["paths"].items()
             if path.startswith("/v1/streams")}
    assert "POST" not in paths["/v1/streams"] and paths["/v1/streams/{stream_id}"] == {"GET", "DELETE"}
    assert paths["/v1/streams/{stream_id}/stop"] == {"POST"}
    for path, documented in paths.items():
        url = path.replace("{stream_id}", "no-such-stream")
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            response = app_client.request(method, url, headers=A)
            if method in documented:
                assert response.status_code != 405, (method, path, response.text)
            else:
                assert response.status_code == 405, (method, path, response.text)
                assert set(response.headers["allow"].split(", ")) == documented, (method, path)


def test_events_as_json_page_by_since(app_client) -> None:
    stream = create(app_client)
    writer = owner_writer(app_client, stream["id"])
    ids = [writer.event("open" if n % 2 == 0 else "close", event(n), "" if n % 2 == 0 else "scores fell")
           for n in range(5)]
    url = f"/v1/streams/{stream['id']}/events"
    page = app_client.get(url, params={"limit": 2}, headers=A).json()
    assert [e["id"] for e in page["events"]] == ids[:2] and page["last_id"] == ids[1]
    rest = app_client.get(url, params={"since": page["last_id"]}, headers=A).json()
    assert [e["id"] for e in rest["events"]] == ids[2:]
    assert rest["events"][0]["kind"] == "open" and rest["events"][1]["reason"] == "scores fell"
    assert rest["events"][0]["event"]["class"] == "fighting"
    assert app_client.get(url, params={"since": "x"}, headers=A).status_code == 422
    live = app_client.get(f"/v1/streams/{stream['id']}", headers=A).json()
    assert live["events_opened"] == 3 and live["events_closed"] == 2 and live["open_event"]["id"] == "ev-4"


def read_sse(response, messages: list[dict]) -> None:
    """Append the messages of an SSE response as they come: {id, event, data} (comments and retry lines left out)."""
    current: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in current:
                messages.append(current)
            current = {}
        elif not line.startswith(":") and ":" in line:
            name, _, value = line.partition(":")
            current[name] = value.strip()
    return messages


def test_sse_resumes_after_last_event_id_with_nothing_lost_or_repeated(app_client) -> None:
    stream = create(app_client)
    writer = owner_writer(app_client, stream["id"])
    ids = [writer.event("open" if n % 2 == 0 else "close", event(n), "") for n in range(4)]
    url, sse = f"/v1/streams/{stream['id']}/events", {**A, "Accept": "text/event-stream"}
    got: list[dict] = []

    def listen() -> None:
        with app_client.stream("GET", url, headers={**sse, "Last-Event-ID": ids[1]}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            read_sse(response, got)  # until the stream has stopped and its last event was sent

    listener = threading.Thread(target=listen)
    listener.start()
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline and listener.is_alive():
        time.sleep(0.05)  # the backlog (events 3 and 4) arrives; then live ones follow
    ids += [writer.event("open", event(4), "")]
    assert app_client.post(f"/v1/streams/{stream['id']}/stop", headers=A).status_code == 200  # closes event 4
    listener.join(15)
    assert not listener.is_alive()
    everything = [e["id"] for e in app_client.get(url, headers=A).json()["events"]]
    assert len(everything) == 6 and everything[:5] == ids
    assert [m["id"] for m in got] == everything[2:]  # after Last-Event-ID: each once, in order
    assert [m["event"] for m in got] == ["open", "close", "open", "close"]
    assert json.loads(got[-1]["data"])["reason"] == "stopped"
    ended = app_client.get(url, headers={**sse, "Last-Event-ID": everything[-1]})
    assert ended.status_code == 204  # a stopped stream with nothing more: an EventSource stops reconnecting


def test_the_timeline_between_two_times(app_client) -> None:
    stream = create(app_client)
    writer = owner_writer(app_client, stream["id"])
    for n in range(6):
        writer.score({"last_score": n / 10, "last_end_s": n + 1.0},
                     {"index": n, "start_s": float(n), "end_s": n + 1.0, "score": n / 10,
                      "class_probs": json.dumps([0.5, 0.5]), "at": time.time(), "lag_s": 0.1})
        time.sleep(0.01)
    url = f"/v1/streams/{stream['id']}/timeline"
    points = app_client.get(url, headers=A).json()["points"]
    assert [p["index"] for p in points] == list(range(6)) and points[3]["score"] == 0.3
    assert points[0]["class_probs"] == [0.5, 0.5] and points[0]["lag_s"] == 0.1
    written = [int(p["id"].split("-")[0]) / 1000 for p in points]  # entry ids are the write times in ms
    middle = app_client.get(url, params={"since": written[2], "until": written[3]}, headers=A).json()["points"]
    assert [p["index"] for p in middle] == [2, 3]
    assert app_client.get(url, params={"since": 5, "until": 4}, headers=A).json()["points"] == []  # nothing between
    assert app_client.get(url, params={"since": -1}, headers=A).status_code == 422
    shown = app_client.get(f"/v1/streams/{stream['id']}", headers=A).json()
    assert shown["snippets_scored"] == 6 and shown["last_score"] == 0.5


def test_metrics_per_stream_carry_id_and_name_but_no_credentials(app_client) -> None:
    stream = create(app_client, name="yard")
    writer = owner_writer(app_client, stream["id"])
    writer.status(status="live", lag_s=0.25, snippets_dropped=3, reconnects=1, clip_precision="int8")
    worker = {"capacity": 2, "running": [stream["id"]], "at": time.time(), "clip_precision": {"int8": "probe"}}
    writer.conn.hset(writer.keys.stream_workers, "w1", json.dumps(worker))
    text = app_client.get("/metrics").text
    assert 'vad_stream_clip_precision{precision="int8",source="probe",worker="w1"} 1.0' in text
    assert app_client.get(f"/v1/streams/{stream['id']}", headers=A).json()["clip_precision"] == "int8"
    assert f'vad_stream_lag_seconds{{name="yard",stream="{stream["id"]}"}} 0.25' in text
    assert f'vad_stream_snippets_dropped_total{{name="yard",stream="{stream["id"]}"}} 3.0' in text
    assert 'vad_streams{status="live"} 1.0' in text
    assert "hunter2" not in text and "127.0.0.1" not in text


def test_a_record_url_is_checked_like_the_url_and_shown_without_credentials(app_client) -> None:
    main = "rtsp://admin:hunter2@127.0.0.1:8554/main?token=s3cret"
    body = create(app_client, record_url=main)
    assert body["record_url"] is not None and "hunter2" not in body["record_url"] and "s3cret" not in body["record_url"]
    assert "/main" in body["record_url"]
    assert app_client.get(f"/v1/streams/{body['id']}", headers=A).json()["record_url"] == body["record_url"]
    assert create(app_client)["record_url"] is None
    refused = app_client.post("/v1/streams", json={"url": URL, "record_url": "rtsp://10.9.9.9/main"}, headers=A)
    assert refused.status_code == 422 and "record_url" in refused.json()["detail"]
    local = app_client.post("/v1/streams", json={"url": URL, "record_url": "file:///etc/passwd"}, headers=A)
    assert local.status_code == 422


def test_deleting_a_stream_deletes_its_events_evidence(app_client, tmp_path) -> None:
    import uuid

    from vad.evidence import EvidenceMeta, evidence_key
    from vad.storage.evidence import note_evidence

    stream_id = create(app_client)["id"]
    store = app_client.app.state.store
    event_id = str(uuid.uuid4())
    owner = json.loads(store.redis.hget(store.keys.stream(stream_id), "owner"))
    note_evidence(store.redis, store.keys, "stream", stream_id, event_id, 60)
    snapshot, meta = tmp_path / "s.jpg", tmp_path / "m.json"
    snapshot.write_bytes(b"\xff\xd8\xff" + bytes(500))
    meta.write_text(EvidenceMeta(event_id=event_id, source="stream", source_id=stream_id, owner=owner, start_s=1,
                                 end_s=2, sizes={"snapshot.jpg": 503}).model_dump_json())
    store.storage.put_file(evidence_key(event_id, "snapshot.jpg"), snapshot, "image/jpeg")
    store.storage.put_file(evidence_key(event_id, "meta.json"), meta, "application/json")
    url = f"/v1/events/{event_id}/snapshot.jpg"
    assert app_client.get(url, headers=A).content == snapshot.read_bytes()
    assert app_client.get(url, headers=B).status_code == 404  # another key's event
    assert app_client.get(f"/v1/events/{event_id}/clip.mp4", headers=A).status_code == 404  # none kept
    assert app_client.delete(f"/v1/streams/{stream_id}", headers=A).status_code == 204
    assert app_client.get(url, headers=A).status_code == 404
    assert store.storage.object_size(evidence_key(event_id, "snapshot.jpg")) is None
