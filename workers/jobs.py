"""Deprecated location of the RQ job functions, kept so that jobs enqueued by 0.1 still run.

Jobs queued before the upgrade name ``workers.jobs.analyze_job`` (and ``workers.jobs.on_job_failure``);
new jobs name :mod:`workers.runtime.jobs`. This alias goes in 0.3: drain the queue before that upgrade
(docs/service.md, "Upgrading").
"""

from workers.runtime.jobs import analyze_job, on_job_failure

__all__ = ["analyze_job", "on_job_failure"]
