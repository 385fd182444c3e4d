"""One worker process (spawned by :mod:`workers.queue.supervisor`): load models once, then run :class:`VadWorker`.

Exit codes: 0 after a normal stop, 3 when the configuration is unusable (no bundle, missing CLIP
weights...), which the supervisor treats as fatal instead of restarting in a loop.
"""

from __future__ import annotations

import argparse
import logging
import sys

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from workers.queue.context import JobContext, install_context
from workers.queue.rq_worker import VadWorker
from workers.queue.supervisor import CONFIG_ERROR_EXIT
from workers.settings import WorkerSettings

log = logging.getLogger("workers.queue.worker_process")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one dsanet-vad RQ worker process (use `vad worker`)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--max-jobs", type=int, default=None, help="exit (and be restarted) after this many jobs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.name} %(levelname)s %(message)s")
    try:
        settings = WorkerSettings()
        ctx = JobContext(settings, redis.Redis.from_url(settings.redis_url))
        ctx.load_models()
    except Exception as exc:  # configuration problems: say what is wrong and do not restart in a loop
        log.error("cannot start: %s", exc)
        return CONFIG_ERROR_EXIT
    install_context(ctx)
    VadWorker.heartbeat_interval_s = settings.heartbeat_interval_s
    VadWorker.heartbeat_ttl_s = settings.heartbeat_ttl_s
    queue = Queue(args.queue, connection=ctx.redis, serializer=JSONSerializer)
    worker = VadWorker([queue], connection=ctx.redis, name=args.name, serializer=JSONSerializer,
                       maintenance_interval=max(5, settings.heartbeat_ttl_s // 2))
    worker.work(burst=args.burst, max_jobs=args.max_jobs, with_scheduler=False, logging_level="INFO")
    return 0


if __name__ == "__main__":
    sys.exit(main())
