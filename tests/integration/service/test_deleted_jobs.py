"""Deleted jobs through the API (TestClient, real Redis, no worker): a record that cannot be read is a 404, never
a 500, and a delete leaves nothing of the job in Redis, ours or RQ's, but the evidence tombstone (with its TTL)."""

from __future__ import annotations

import json

from tests.unit.service.conftest import mp4_bytes
from vad.storage.evidence import TOMBSTONE_S

PARTIAL = {"stage": json.dumps("encoding"), "percent": json.dumps(40.0), "status": json.dumps("canceled"),
           "finished_at": json.dumps(1.0)}


def _keys_of(store, job_id: str) -> list[bytes]:
    return [*store.redis.scan_iter(f"{store.keys.prefix}*{job_id}*"), *store.redis.scan_iter(f"rq:*{job_id}*")]


def test_a_partial_record_is_404_and_logged(client, caplog) -> None:
    store = client.app.state.store
    store.redis.hset(store.keys.job("partial1"), mapping=PARTIAL)  # what an old worker left after a delete
    assert client.get("/v1/jobs/partial1").status_code == 404
    assert client.get("/v1/jobs/partial1/result").status_code == 404
    assert client.delete("/v1/jobs/partial1").status_code == 404
    assert "partial1" in caplog.text and "cannot be read" in caplog.text


def test_delete_of_a_queued_job_leaves_no_key(client, settings) -> None:
    store = client.app.state.store
    job = client.post("/v1/videos", files={"file": ("cam.mp4", mp4_bytes(seed=3))}).json()
    assert _keys_of(store, job["id"])
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    tombstone = store.keys.evidence_deleted("job", job["id"])  # for a worker still writing evidence; it expires
    assert _keys_of(store, job["id"]) == [tombstone.encode()] and 0 < store.redis.ttl(tombstone) <= TOMBSTONE_S
    registries = [key for key in store.redis.scan_iter(f"rq:*{settings.queue_name}*")
                  if store.redis.type(key) == b"zset"]
    assert not [key for key in registries if any(job["id"].encode() in m for m in store.redis.zrange(key, 0, -1))]
    assert not (settings.storage_dir / job["id"]).exists()
    for path in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/result"):
        assert client.get(path).status_code == 404
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 404
