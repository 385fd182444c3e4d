"""The job record as a worker sees it: read it tolerantly, write to it only while it exists, and clean up after a
job its owner deleted.

The owner may delete a job at any moment: the API removes our record first, then RQ's job and the upload. A
worker that wrote with a plain ``HSET`` would re-create a partial record that no reader can parse (a 500 on every
request, kept for the result TTL). So every worker write to the job hash is one Lua script that writes only if
the hash exists, the final one storing the result in the same step; a missing record tells the worker the job
was deleted. RQ itself writes the job's keys again when the job ends (its result, its registries), after our
code has returned; :func:`discard_if_deleted` runs after that and removes them.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from rq.job import Job

from vad.exceptions import StorageError
from vad.jobstate import JobRecord, JobStatus
from vad.keys import encode_fields
from workers.runtime.context import JobContext

log = logging.getLogger(__name__)

# KEYS: the job hash [, the result key]. ARGV: TTL in seconds, the result JSON ('' without a result key), then
# field, value pairs. Returns the record's status after the write, or nil when the record is gone (nothing written).
UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[1])
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[1]) end
return redis.call('HGET', KEYS[1], 'status') or 'null'
"""


def read_record(ctx: JobContext, job_id: str) -> JobRecord | None:
    """The job's record; ``None`` when it was deleted or cannot be read (logged by :meth:`JobRecord.read`)."""
    return JobRecord.read(job_id, ctx.redis.hgetall(ctx.keys.job(job_id)))


def update_record(ctx: JobContext, job_id: str, *, result_json: str | None = None, **fields: Any) -> JobStatus | None:
    """Write ``fields`` (and the result, when given) only if the job's record still exists; refresh its TTL.

    Returns:
        The record's status after the write, or ``None`` when the record is gone and nothing was written.
    """
    keys = [ctx.keys.job(job_id)] + ([ctx.keys.result(job_id)] if result_json is not None else [])
    pairs = [item for pair in encode_fields(**fields).items() for item in pair]
    script = ctx.redis.register_script(UPDATE_IF_EXISTS)
    status = script(keys=keys, args=[ctx.settings.result_ttl_s, result_json or "", *pairs])
    if status is None:
        return None
    return JobStatus(json.loads(status) or JobStatus.queued)  # a record without a status is a queued one


def discard_if_deleted(ctx: JobContext, job: Job) -> bool:
    """After RQ has recorded a job's end: if its owner deleted it meanwhile, remove everything left of it.

    RQ's keys (the job hash, its results, registry and queue entries, executions) go through RQ's own
    :meth:`rq.job.Job.delete`; ours (a record that cannot be read, a result) and the upload too.

    Returns:
        Whether the job had been deleted.
    """
    if read_record(ctx, job.id) is not None:
        return False
    job.delete(remove_from_queue=True, delete_dependents=True)
    ctx.redis.delete(ctx.keys.job(job.id), ctx.keys.result(job.id))
    try:
        ctx.storage.delete(job.id)
    except StorageError as exc:  # its record is gone: the supervisor's sweep removes the upload later
        log.warning("the upload of deleted job %s stays until the sweep removes it: %s", job.id, exc)
    log.info("job %s was deleted by its owner: removed what was left of it", job.id)
    return True
