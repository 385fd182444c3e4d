"""The worker process model: a CUDA-free supervisor and long-lived, spawned RQ worker processes.

Why not RQ's default forking ``Worker``: it forks a fresh "work horse" per job. A forked child
cannot use CUDA once its parent has initialised it, and a parent that never touches CUDA makes
every job reload CLIP and DSANet (seconds, and GPU memory churn). Why not a bare
``SimpleWorker``: it keeps models warm, but a crash takes the worker down with nobody to restart
it, a hung C call (a decoder) cannot be interrupted, and a killed worker's job is only noticed
when its registry entry expires, ``job_timeout + 60`` seconds later.

What we do instead:

* ``vad worker`` starts a **supervisor** that never imports torch. It spawns N **worker
  processes** (fresh interpreters, not forks, so each may initialise CUDA) and restarts any that
  dies, with back-off.
* Each worker process loads its models **once** and runs :class:`VadWorker`, a ``SimpleWorker``
  that executes jobs in-process (models stay warm) with RQ's SIGALRM job timeout, and a
  heartbeat thread that refreshes the job's registry entry every few seconds with a short TTL.
  When a worker process is killed, its job's entry expires within ``heartbeat_ttl`` seconds and
  RQ's own registry cleanup retries it (bounded by the job's ``Retry``) or fails it.
* The supervisor runs that cleanup every few seconds, and kills a worker process whose job has
  run past its timeout plus a grace period (a hard timeout for C code that SIGALRM cannot
  interrupt). Worker processes are recycled after ``max_jobs`` jobs to bound slow leaks.
* After RQ has recorded a job's outcome, a job its owner deleted meanwhile is removed for good
  (:func:`~workers.runtime.records.discard_if_deleted`): RQ writes its keys again when the job ends.
* Redis going away while a job ends (a restart, a failover) does not end the process: RQ cannot
  record the job's end, so the job is left to the registry cleanup (its heartbeat stopped, so it
  is retried or failed within ``heartbeat_ttl`` of Redis being back) while the process waits for
  Redis with its models loaded, instead of quitting and reloading them. A busy worker's own key
  lives only ``heartbeat_ttl`` too, so after a long outage the worker registers itself again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from rq import Queue
from rq.job import Job
from rq.worker import SimpleWorker, WorkerStatus

from workers.runtime.context import get_context
from workers.runtime.records import discard_if_deleted

log = logging.getLogger(__name__)
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)


class VadWorker(SimpleWorker):
    """Executes jobs in this process, with a heartbeat thread so that a killed process is noticed fast."""

    heartbeat_interval_s: float = 5.0
    heartbeat_ttl_s: int = 20

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.heartbeat_ttl_s

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job, execution, stop), name="vad-heartbeat", daemon=True)
        beat.start()
        try:
            self.perform_job(job, queue, execution)
        except REDIS_ERRORS as exc:
            log.warning("job %s: Redis became unavailable and its end could not be recorded (%s); the registry "
                        "cleanup retries it once Redis is back", job.id, exc)
        finally:
            stop.set()
            beat.join()
        self.wait_for_redis()
        try:
            discard_if_deleted(get_context(), job)
        except Exception:  # cleanup must never stop the worker; the keys expire with their TTL
            log.warning("cleaning up after job %s failed", job.id, exc_info=True)
        self.set_state(WorkerStatus.IDLE)

    def wait_for_redis(self, interval_s: float = 1.0) -> None:
        """Return once Redis answers (at once when it does) with this worker registered, or when a stop was requested
        meanwhile."""
        waited = 0.0
        while not self._stop_requested:
            try:
                self.connection.ping()
            except REDIS_ERRORS:
                if waited == 0.0:
                    log.warning("Redis does not answer; waiting for it with the models loaded")
                time.sleep(interval_s)
                waited += interval_s
                continue
            if waited:
                log.info("Redis answers again after %.0f s", waited)
            if not self.connection.hexists(self.key, "birth"):  # expired in an outage: only fragments were rewritten
                log.warning("this worker's registration expired while Redis was away; registering again")
                self.connection.delete(self.key)
                self.register_birth()
            return

    def _beat(self, job: Job, execution: Any, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_interval_s):
            try:
                self.maintain_heartbeats(job, execution)
            except Exception:  # a missed beat is retried; it must never kill the job
                log.warning("heartbeat for job %s failed", job.id, exc_info=True)
