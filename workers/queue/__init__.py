"""The queue side of a worker host.

- :mod:`~workers.queue.supervisor`: the CUDA-free parent (``vad worker``) that spawns, watches and restarts
- :mod:`~workers.queue.worker_process`: one long-lived worker process (models loaded once), which runs
- :mod:`~workers.queue.rq_worker`: the RQ worker class (heartbeat, timeouts) that executes
- :mod:`~workers.queue.jobs`: the RQ job functions, with :mod:`~workers.queue.context` (models, Redis) and
  :mod:`~workers.queue.notify` (callbacks); :mod:`~workers.queue.healthcheck` is the container health check.
"""
