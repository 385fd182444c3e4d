"""Adaptation from verdicts end to end, on live Redis and a local storage: a stream's reviewed events (saved feature
windows, as stream events close) and normal windows → ``adapt_stream`` (the worker job) → a candidate in shadow with
its lineage → the stream's worker gives the runner both heads without a restart and promotes the shadow once its
rule holds → the API shows the lineage, rolls back, refuses what the rules refuse, and forgets all of it with the
stream. Fine-tuning runs on the reduced DSANet of tests/unit/workers/test_adaptation.py."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.unit.workers.test_adaptation import _base, camera
from vad.bundles import ShadowStats
from vad.events import event_member
from vad.keys import Keys
from vad.storage import LocalStorage
from vad.storage.features import FeatureStore
from vad.streams import StreamRecord
from workers.runtime.history import npy_bytes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def record_camera(conn: Any, keys: Keys, store: FeatureStore, stream_id: str) -> int:
    """The camera's samples as the workers leave them: closed stream events with a verdict and saved features (the
    window from 16 snippets before), and normal windows. How many events."""
    events = 0
    for sample in camera():
        if sample.kind == "normal":
            store.put(sample.name.replace("cam", stream_id), npy_bytes(sample.features))
            continue
        event_id, at = f"ev-{secrets.token_hex(4)}", time.time()
        event = {"id": event_id, "class": "abuse" if sample.kind == "true_alert" else "fighting", "class_prob": 0.6,
                 "start_s": 10.0, "end_s": 15.0, "peak_score": 0.9, "mean_score": 0.7, "first_index": 116,
                 "last_index": 123, "features_from_index": 100}
        verdict = {"verdict": sample.kind, "note": "", "by": "", "at": at}
        fields = {"source": "stream", "source_id": stream_id, "source_name": "Front", "owner": "", "threshold": 0.5,
                  "event": event, "state": "closed", "at": at, "member": event_member(at, event_id),
                  "verdict": verdict}
        conn.hset(keys.event(event_id), mapping={k: json.dumps(v) for k, v in fields.items()})
        conn.zadd(keys.events_of_source("stream", stream_id), {event_member(at, event_id): 0})
        store.put(event_id, npy_bytes(sample.features))
        events += 1
    return events


class Runner:
    """What the stream service needs of a runner to follow the stream's bundles."""

    def __init__(self) -> None:
        self.heads: list[tuple[Any, Any]] = []
        self.shadow_stats: ShadowStats | None = None

    def set_heads(self, active: Any, shadow: Any) -> None:
        self.heads.append((active, shadow))
        self.shadow_stats = None if shadow is None else ShadowStats(since=time.time())


@pytest.fixture
def world(live_redis: Any, tmp_path: Path) -> Iterator[SimpleNamespace]:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import ServiceSettings
    from workers.settings import WorkerSettings

    tag = f"test-adapt-{secrets.token_hex(4)}"
    common = {"key_prefix": f"{tag}:", "queue_name": tag, "storage_dir": tmp_path / "uploads",
              "stream_allowlist": ["127.0.0.1/32"], "adapt_shadow_min_snippets": 50}
    worker = WorkerSettings(**common, device="cpu", adapt_epochs=4, adapt_lr=1e-3, stream_normal_windows=6)
    app = create_app(ServiceSettings(**common, api_keys=[]))
    with TestClient(app) as client:
        yield SimpleNamespace(client=client, settings=worker, conn=live_redis, keys=Keys(f"{tag}:"),
                              storage=LocalStorage(tmp_path / "uploads"))
    found = list(live_redis.scan_iter(f"{tag}*"))
    if found:
        live_redis.delete(*found)


def test_verdicts_adapt_a_camera_its_shadow_is_promoted_and_rolled_back(world: SimpleNamespace, one_thread: None
                                                                        ) -> None:
    from workers.runtime.adapt import adapt_stream
    from workers.runtime.streams import StreamService, _Running

    conn, keys, client = world.conn, world.keys, world.client
    created = client.post("/v1/streams", json={"url": "rtsp://127.0.0.1:8554/cam", "name": "Front"})
    assert created.status_code == 201, created.text
    stream_id = created.json()["id"]
    assert record_camera(conn, keys, FeatureStore(world.storage), stream_id) == 16
    ctx = SimpleNamespace(settings=world.settings, redis=conn, keys=keys, storage=world.storage,
                          default_model="default")
    base = _base()

    entry = adapt_stream(ctx, stream_id, base_of=lambda name: base)  # type: ignore[arg-type]
    assert entry.state == "shadow", entry.reason
    assert entry.parent is None and entry.metrics.candidate_auc is not None and entry.size_bytes > 0
    assert len(entry.data["train"]["normal"]) + len(entry.data["held_out"]["normal"]) == 6
    shown = client.get(f"/v1/streams/{stream_id}/bundles").json()
    assert shown["active"] is None and shown["shadow"] == entry.id
    assert shown["adaptation"]["state"] == "finished" and shown["adaptation"]["bundle_id"] == entry.id
    assert shown["bundles"][0]["id"] == entry.id and shown["bundles"][0]["metrics"]["candidate_auc"] is not None

    # the stream's worker: both heads on the running runner, no restart; the shadow's tally; the rule promotes it
    engine = SimpleNamespace(head=lambda bundle: ("head", bundle.sha256))
    service = StreamService(ctx, "w1", capacity=1)  # type: ignore[arg-type]
    item = _Running(lease=None, writer=None)  # type: ignore[arg-type]
    item.runner, item.engine = Runner(), engine
    service.follow_bundles(stream_id, item)
    assert item.runner.heads == [(None, ("head", entry.sha256))]
    refused = client.post(f"/v1/streams/{stream_id}/bundles/promote")
    assert refused.status_code == 409 and "scored 0 of the 50" in refused.json()["detail"]
    item.runner.shadow_stats = ShadowStats(since=time.time(), snippets=60, shadow_events=1, live_events=4)
    service.follow_bundles(stream_id, item)  # reports the tally, and the rule holds: promoted
    service.follow_bundles(stream_id, item)  # the runner follows
    assert item.runner.heads[-1] == (("head", entry.sha256), None)
    shown = client.get(f"/v1/streams/{stream_id}/bundles").json()
    assert shown["active"] == entry.id and shown["bundles"][0]["shadow"]["live_events"] == 4

    rolled = client.post(f"/v1/streams/{stream_id}/bundles/rollback")
    assert rolled.status_code == 200 and rolled.json()["active"] is None
    assert rolled.json()["bundles"][0]["state"] == "retired"
    service.follow_bundles(stream_id, item)
    assert item.runner.heads[-1] == (None, None)
    assert client.post(f"/v1/streams/{stream_id}/bundles/rollback").status_code == 409

    # the API queues the worker job, one at a time; deleting the stream forgets its bundles and normal windows
    queued = client.post(f"/v1/streams/{stream_id}/adapt")
    assert queued.status_code == 202 and queued.json()["adaptation"]["state"] == "queued"
    assert client.post(f"/v1/streams/{stream_id}/adapt").status_code == 409
    conn.delete(f"rq:job:{queued.json()['adaptation']['job_id']}")  # lost: its worker died and RQ forgot it
    lost = client.get(f"/v1/streams/{stream_id}/bundles").json()["adaptation"]
    assert lost["state"] == "failed" and "adapt again" in lost["reason"]
    assert client.post(f"/v1/streams/{stream_id}/adapt").status_code == 202
    assert client.delete(f"/v1/streams/{stream_id}").status_code == 204
    assert not conn.exists(keys.stream_bundles(stream_id))
    assert not list(world.storage.list_objects(f".bundles/{stream_id}/"))
    assert not list(world.storage.list_objects(f".features/{stream_id}.normal"))
    assert client.get(f"/v1/streams/{stream_id}/bundles").status_code == 404


def test_too_few_verdicts_fail_with_the_reason_in_the_stream(world: SimpleNamespace) -> None:
    from model.exceptions import DataError
    from workers.runtime.adapt import adapt_stream

    conn, keys = world.conn, world.keys
    stream_id = "cam-empty"
    conn.hset(keys.stream(stream_id), mapping=StreamRecord(id=stream_id).to_redis())
    ctx = SimpleNamespace(settings=world.settings, redis=conn, keys=keys, storage=world.storage,
                          default_model="default")
    with pytest.raises(DataError, match="at least one true alert"):
        adapt_stream(ctx, stream_id, base_of=lambda name: _base())  # type: ignore[arg-type]
    status = json.loads(conn.hget(keys.stream_bundles(stream_id), "adaptation"))
    assert status["state"] == "failed" and "give more verdicts" in status["reason"]
