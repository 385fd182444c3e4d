"""The RQ job functions under the name the API enqueues (:data:`vad.jobstate.JOB_FUNCTION`).

A queued job names its function by module path, and a job may wait in Redis across an upgrade. Every release
has had ``workers.jobs.analyze_job`` (and ``workers.jobs.on_job_failure``), so the API names this module and
the implementation (:mod:`workers.runtime.jobs`) can move without stranding a queued job. ``adapt_stream_job``
(:data:`vad.bundles.ADAPT_FUNCTION`, issue 20) fine-tunes a stream's own bundle from its verdicts.
``workers.queue.jobs`` (:mod:`workers.queue`) is the deprecated path of the 0.2 development builds.
"""

from workers.runtime.adapt import adapt_stream_job
from workers.runtime.jobs import analyze_job, on_job_failure

__all__ = ["adapt_stream_job", "analyze_job", "on_job_failure"]
