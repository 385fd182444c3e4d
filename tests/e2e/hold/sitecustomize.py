"""Test hook of tests/e2e/test_jobs_e2e.py: hold a job at one stage of the worker, to delete it right there.

It is on the ``PYTHONPATH`` of the shared stack's worker only (``conftest.py``: ``running_service(worker_env=...)``;
inert unless that test sets its key) and acts only in
worker processes (``python -m workers.runtime.worker_process``); nothing in the package knows of it. While the Redis
key ``{VAD_KEY_PREFIX}test:hold`` names a stage, the job that reaches it writes ``"{job id} {stage}"`` to
``{VAD_KEY_PREFIX}test:held`` and waits (60 s at most) until the hold key changes. Stages: the progress stages
(``decoding``, ``encoding``, ``scoring``, ``done``: held just after the worker wrote them) and ``finished``
(``analyze_job`` returned, its result stored; RQ has not recorded the outcome yet).
"""

from __future__ import annotations

import sys
import time
from typing import Any

HOLD_LIMIT_S = 60.0


def _install() -> None:
    import workers.jobs as enqueued
    import workers.runtime.jobs as jobs
    from workers.runtime.context import get_context

    def hold(stage: str, job_id: str) -> None:
        ctx = get_context()
        key = f"{ctx.keys.prefix}test:hold"
        if ctx.redis.get(key) != stage.encode():
            return
        ctx.redis.set(f"{ctx.keys.prefix}test:held", f"{job_id} {stage}")
        deadline = time.monotonic() + HOLD_LIMIT_S
        while ctx.redis.get(key) == stage.encode() and time.monotonic() < deadline:
            time.sleep(0.02)

    report = jobs.Progress.__call__

    def progress(self: Any, stage: str, fraction: float) -> None:
        report(self, stage, fraction)
        if getattr(self, "_hook_stage", None) != stage:
            self._hook_stage = stage
            hold(stage, self.job_id)

    analyze = jobs.analyze_job

    def analyze_job(job_id: str) -> Any:
        outcome = analyze(job_id)
        hold("finished", job_id)
        return outcome

    jobs.Progress.__call__ = progress  # type: ignore[method-assign]
    jobs.analyze_job = enqueued.analyze_job = analyze_job  # the name the API enqueues, and the implementation's


if "workers.runtime.worker_process" in sys.orig_argv:
    _install()
