"""Container health check: exit 0 when an RQ worker of this host is registered for our queue.

Used by the worker image's HEALTHCHECK; reads the same ``VAD_*`` settings as the worker.
"""

from __future__ import annotations

import socket
import sys

import redis
from rq import Queue, Worker

from workers.settings import WorkerSettings


def main() -> int:
    settings = WorkerSettings()
    try:
        conn = redis.Redis.from_url(settings.redis_url, socket_timeout=3)
        workers = Worker.all(queue=Queue(settings.queue_name, connection=conn))
    except redis.RedisError as exc:
        print(f"unhealthy: Redis unavailable ({exc})", file=sys.stderr)
        return 1
    host = socket.gethostname()
    mine = [w for w in workers if w.hostname == host]
    if not mine:
        print(f"unhealthy: no worker of host {host} is registered on queue {settings.queue_name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
