"""The CUDA-free supervisor of ``vad worker``: spawns worker processes, restarts them, reaps dead jobs.

See :mod:`workers.runtime.rq_worker` for why the worker processes are long-lived spawned interpreters. This
module imports neither torch nor the pipeline, so the supervisor never initialises CUDA.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from vad.exceptions import StorageError
from vad.jobstate import JobRecord
from vad.keys import Keys
from vad.storage import UNCLAIMED_S, open_storage
from vad.storage.evidence import sweep_evidence
from vad.storage.features import FeatureStore, normal_window_stream, sweep_features
from workers.runtime.gpus import default_concurrency, detect_gpus, gpu_for_slot, uses_gpu_assignment
from workers.settings import WorkerSettings

log = logging.getLogger(__name__)
CONFIG_ERROR_EXIT = 3  # exit code of a worker process whose configuration is unusable
SWEEP_INTERVAL_S = 60


@dataclass
class _Child:
    name: str
    process: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    failures: int = 0


class Supervisor:
    """Keeps ``concurrency`` worker processes alive and the queue's registries clean.

    Args:
        settings: worker settings (queue, storage, retention, heartbeat and timeout settings are used here).
        concurrency: number of worker processes; ``None``: one per GPU times ``workers_per_gpu`` (one without GPUs).
        child_args: extra arguments for ``python -m workers.runtime.worker_process``.
        reap_interval_s: how often abandoned jobs and expired uploads are looked for.
    """

    def __init__(self, settings: WorkerSettings, concurrency: int | None = None, child_args: Sequence[str] = (),
                 reap_interval_s: float = 5.0) -> None:
        self.settings, self.child_args = settings, list(child_args)
        self.gpus = detect_gpus(settings.gpus, os.environ) if uses_gpu_assignment(settings.device) else []
        self.concurrency = concurrency or default_concurrency(self.gpus, settings.workers_per_gpu)
        self.conn = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
        self.queue = Queue(settings.queue_name, connection=self.conn, serializer=JSONSerializer)
        self.keys = Keys(settings.key_prefix)
        self.storage = open_storage(settings)
        self.grace, self.reap_interval = settings.hard_timeout_grace_s, reap_interval_s
        self.children: dict[int, _Child] = {}
        self.restarts: dict[int, tuple[float, int]] = {}  # slot -> (monotonic time of its restart, failures so far)
        self.stopping = False
        self.exit_code = 0
        self.prefix = f"vad-{os.uname().nodename}-{os.getpid()}"

    def _spawn(self, slot: int, failures: int = 0) -> None:
        name = f"{self.prefix}-{slot}-{int(time.time())}"
        cmd = [sys.executable, "-m", "workers.runtime.worker_process", "--name", name, "--queue", self.queue.name,
               "--supervisor-pid", str(os.getpid()), *self.child_args]
        if self.settings.max_jobs_per_process:
            cmd += ["--max-jobs", str(self.settings.max_jobs_per_process)]
        gpu = gpu_for_slot(slot, self.gpus)
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else None
        self.children[slot] = _Child(name, subprocess.Popen(cmd, env=env), failures=failures)
        log.info("started worker process %s (pid %d%s)", name, self.children[slot].process.pid,
                 f", GPU {gpu}" if gpu is not None else "")

    def run(self) -> int:
        """Run until SIGINT/SIGTERM (exit code 0) or a configuration error in a worker (exit code 3)."""
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        for slot in range(self.concurrency):
            self._spawn(slot)
        last_reap = 0.0
        while not self.stopping:
            self._restart_dead()
            if time.monotonic() - last_reap >= self.reap_interval:
                self.reap()
                last_reap = time.monotonic()
            time.sleep(0.5)
        self._shutdown()
        return self.exit_code

    def _request_stop(self, signum: int, _frame: object) -> None:
        if self.stopping:  # second Ctrl-C: do not wait for running jobs
            for child in self.children.values():
                child.process.kill()
        self.stopping = True

    def _restart_dead(self) -> None:
        """Restart each worker process that exited, after a backoff when it keeps failing (0.5 s doubling to 30 s).
        Never blocks: a restart that is not due yet waits for a later turn of the loop, which meanwhile reaps,
        restarts other slots and notices a stop request."""
        now = time.monotonic()
        for slot, (at, failures) in list(self.restarts.items()):
            if now >= at and not self.stopping:
                del self.restarts[slot]
                self._spawn(slot, failures)
        for slot, child in list(self.children.items()):
            if slot in self.restarts:
                continue
            code = child.process.poll()
            if code is None:
                continue
            if code == CONFIG_ERROR_EXIT:
                log.error("worker process %s cannot start (see its error above); stopping", child.name)
                self.stopping, self.exit_code = True, CONFIG_ERROR_EXIT
                return
            healthy = now - child.started > 60
            failures = 0 if healthy or code == 0 else child.failures + 1
            delay = min(30.0, 0.5 * 2 ** failures) if failures else 0.0
            log.warning("worker process %s exited with %s; restarting in %.1fs", child.name, code, delay)
            if delay:
                self.restarts[slot] = (now + delay, failures)
            elif not self.stopping:
                self._spawn(slot, failures)

    def reap(self) -> None:
        """Retry or fail jobs of dead workers (RQ's own cleanup), and hard-kill workers past their timeout."""
        try:
            self.queue.started_job_registry.cleanup()
            self._kill_overdue()
            self.storage.sweep_scratch()
            # one supervisor of the deployment sweeps the shared storage per interval: listing a bucket is not free
            if self.conn.set(self.keys.sweep, self.prefix, nx=True, ex=SWEEP_INTERVAL_S):
                self.sweep_uploads()
                self.sweep_evidence()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("registry maintenance skipped: Redis unavailable (%s)", exc)
        except StorageError as exc:
            log.warning("the upload sweep is skipped: %s", exc)
        except Exception:  # maintenance must never end the supervisor (and with it every worker process)
            log.exception("registry maintenance failed; trying again in %.0f s", self.reap_interval)

    def _kill_overdue(self) -> None:
        by_name = {child.name: child for child in self.children.values()}
        for worker in Worker.all(queue=self.queue):
            child = by_name.get(worker.name)
            job_id = worker.get_current_job_id()
            if child is None or job_id is None:
                continue
            try:
                job = Job.fetch(job_id, connection=self.conn, serializer=JSONSerializer)
            except NoSuchJobError:
                continue  # deleted by its owner while it runs: the worker stops it at its next progress write
            if job.started_at is None or job.timeout is None or job.timeout < 0:
                continue
            elapsed = (datetime.now(UTC) - job.started_at.replace(tzinfo=UTC)).total_seconds()
            if elapsed > job.timeout + self.grace:
                log.error("job %s ran %.0fs (timeout %ss): killing worker process %s", job_id, elapsed,
                          job.timeout, worker.name)
                child.process.kill()

    def sweep_uploads(self) -> None:
        """Delete uploads of jobs that ended more than ``upload_retention_s`` ago, or whose record is gone (after
        :data:`~vad.storage.UNCLAIMED_S`: an upload in progress has no record yet), and abort multipart uploads
        left open that long (an API killed mid-upload); and saved features whose job or event record is gone."""
        now = time.time()
        for upload in list(self.storage.uploads()):
            record = JobRecord.read(upload.job_id, self.conn.hgetall(self.keys.job(upload.job_id)))
            if record is not None:  # a record that cannot be read counts as gone (JobRecord.read logs it)
                ended = record.finished_at if record.status.terminal else None
                if ended is None or now - ended < self.settings.upload_retention_s:
                    continue
            elif now - upload.modified < UNCLAIMED_S:
                continue
            self.storage.delete(upload.job_id)
        self.storage.abort_stale(UNCLAIMED_S)
        # saved features live as long as their job's record (a job's) or their event's record (a stream event's)
        # and a stream's normal windows as long as the stream's record
        def alive(name: str) -> bool:
            stream_id = normal_window_stream(name)
            if stream_id is not None:
                return bool(self.conn.exists(self.keys.stream(stream_id)))
            return bool(self.conn.exists(self.keys.job(name), self.keys.event(name)))

        sweep_features(FeatureStore(self.storage), alive, UNCLAIMED_S)

    def sweep_evidence(self) -> None:
        """Delete evidence past ``evidence_retention_s``, then the oldest beyond ``evidence_max_gb`` in all."""
        gone = sweep_evidence(self.storage, self.settings.evidence_retention_s,
                              int(self.settings.evidence_max_gb * 1024**3))
        if gone:
            log.info("evidence sweep: deleted the evidence of %d events", len(gone))

    def _shutdown(self, grace_s: float = 30.0) -> None:
        for child in self.children.values():
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)  # RQ warm shutdown: finish the current job
        deadline = time.monotonic() + grace_s
        for child in self.children.values():
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
