"""One worker process (spawned by :mod:`workers.runtime.supervisor`): load models once, then run :class:`VadWorker`.

Exit codes: 0 after a normal stop, 3 when the configuration is unusable (no bundle, missing CLIP
weights...), which the supervisor treats as fatal instead of restarting in a loop.

A worker process never outlives its supervisor: on Linux the kernel sends it SIGKILL when the
supervisor dies, however it dies (SIGKILL and OOM kills included). An orphan would otherwise keep
taking jobs with nobody to enforce hard timeouts, restart it or stop it, and hold its GPU. A job it
was running is retried by the next supervisor's registry cleanup, like that of any killed worker.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from vad.storage.features import FeatureStore
from workers.runtime.context import JobContext, install_context
from workers.runtime.rq_worker import VadWorker
from workers.runtime.streams import StreamService
from workers.runtime.supervisor import CONFIG_ERROR_EXIT
from workers.settings import WorkerSettings

log = logging.getLogger("workers.runtime.worker_process")
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_supervisor(supervisor_pid: int) -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies; ``False`` if the parent is already gone.

    The check after ``prctl`` closes the race where the supervisor died before the request took effect.
    Elsewhere than Linux it only logs that orphans are possible.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        log.warning("prctl is not available: this worker process would outlive a killed supervisor")
    else:
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d)", ctypes.get_errno())
    return os.getppid() == supervisor_pid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one dsanet-vad RQ worker process (use `vad worker`)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--max-jobs", type=int, default=None, help="exit (and be restarted) after this many jobs")
    parser.add_argument("--supervisor-pid", type=int, default=None, help="die with this parent process")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.name} %(levelname)s %(message)s")
    if args.supervisor_pid is not None and not die_with_supervisor(args.supervisor_pid):
        log.error("the supervisor (pid %d) is gone; exiting", args.supervisor_pid)
        return 1
    try:
        settings = WorkerSettings()
        ctx = JobContext(settings, redis.Redis.from_url(settings.redis_url))
        ctx.load_models()
        if settings.streams_per_worker and not args.burst:
            ctx.prepare_streams()
    except Exception as exc:  # configuration problems: say what is wrong and do not restart in a loop
        log.error("cannot start: %s", exc)
        return CONFIG_ERROR_EXIT
    install_context(ctx)
    VadWorker.heartbeat_interval_s = settings.heartbeat_interval_s
    VadWorker.heartbeat_ttl_s = settings.heartbeat_ttl_s
    queue = Queue(args.queue, connection=ctx.redis, serializer=JSONSerializer)
    worker = VadWorker([queue], connection=ctx.redis, name=args.name, serializer=JSONSerializer,
                       maintenance_interval=max(5, settings.heartbeat_ttl_s // 2))
    streams = (StreamService(ctx, args.name, features=FeatureStore(ctx.storage)).start()
               if settings.streams_per_worker and not args.burst else None)
    try:
        worker.work(burst=args.burst, max_jobs=args.max_jobs, with_scheduler=False, logging_level="INFO")
    finally:
        if streams is not None:
            streams.close()  # its streams go back to the queue for another worker
    return 0


if __name__ == "__main__":
    sys.exit(main())
