"""Deprecated: the former name of :mod:`workers.runtime`, kept only so that queued jobs naming
``workers.queue.jobs.analyze_job`` (or ``workers.queue.jobs.on_job_failure``) still run.

A queued job names its function by module path. The name ``workers.queue.jobs`` is registered here as
:mod:`workers.runtime.jobs` itself (the same module object, so nothing can drift), which Python's import
system resolves once this parent module has run. This alias goes in 0.3: drain the queue before that upgrade
(docs/service.md, "Upgrading"). Import :mod:`workers.runtime` in new code.
"""

import sys

from workers.runtime import jobs

sys.modules[f"{__name__}.jobs"] = jobs

__all__ = ["jobs"]
