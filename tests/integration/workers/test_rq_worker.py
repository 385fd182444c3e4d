"""VadWorker after a Redis outage: it waits for Redis and registers itself again if its key expired meanwhile."""

from __future__ import annotations

import secrets

import redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from workers.runtime.rq_worker import VadWorker


def test_a_worker_whose_key_expired_in_an_outage_registers_again(live_redis: redis.Redis) -> None:
    queue = Queue(f"unit-{secrets.token_hex(4)}", connection=live_redis, serializer=JSONSerializer)
    worker = VadWorker([queue], connection=live_redis, name=f"unit-{secrets.token_hex(4)}", serializer=JSONSerializer)
    worker.register_birth()
    try:
        live_redis.delete(worker.key)  # its busy-worker TTL ran out while Redis was away...
        # ...and fragments came back
        live_redis.hset(worker.key, mapping={"state": "busy", "last_heartbeat": "2026-01-01T00:00:00.000000Z"})
        assert [w.pid for w in Worker.all(queue=queue)] == [None]
        worker.wait_for_redis()
        assert [w.pid for w in Worker.all(queue=queue)] == [worker.pid]
        worker.wait_for_redis()  # registered: nothing to do
        assert [w.name for w in Worker.all(queue=queue)] == [worker.name]
    finally:
        worker.register_death()
        live_redis.delete(worker.key)
