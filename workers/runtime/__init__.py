"""The worker runtime: the processes of a worker host, the RQ jobs they run, and the live streams they own.

- :mod:`~workers.runtime.supervisor`: the CUDA-free parent (``vad worker``) that spawns, watches and restarts
- :mod:`~workers.runtime.worker_process`: one long-lived worker process (models loaded once), which runs
- :mod:`~workers.runtime.rq_worker`: the RQ worker class (heartbeat, timeouts) that executes
- :mod:`~workers.runtime.jobs`: the RQ job functions, with :mod:`~workers.runtime.context` (models, Redis) and
  :mod:`~workers.runtime.notify` (callbacks); :mod:`~workers.runtime.healthcheck` is the container health check.
"""
