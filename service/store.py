"""Jobs in Redis: our records, results, dedup index, and the RQ queue (referenced by function name)."""

from __future__ import annotations

import hashlib
import logging

import redis
from rq import Callback, Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.job import JobStatus as RQStatus
from rq.serializers import JSONSerializer
from rq.worker import Worker

from service.events import EventIndex
from service.exceptions import JobNotFound, StoreUnavailable
from service.settings import ServiceSettings
from vad.evidence import SourceKind
from vad.exceptions import StorageError
from vad.jobstate import FAILURE_CALLBACK, JOB_FUNCTION, JobOptions, JobRecord, JobStatus, dedup_digest
from vad.keys import Keys
from vad.net.redact import scrub_paths
from vad.storage import open_storage
from vad.storage.evidence import delete_source_evidence

log = logging.getLogger(__name__)
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)

# KEYS: job hash, result, dedup entry; ARGV: job id. The dedup entry goes only if it still names this job.
DELETE_OURS = """
redis.call('DEL', KEYS[1], KEYS[2])
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
"""


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def owner_id(api_key: str | None) -> str:
    """A stable, non-reversible owner id for an API key ('' when authentication is off)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else ""


def connect(settings: ServiceSettings) -> redis.Redis:
    """A Redis client whose calls fail fast (socket timeouts) instead of hanging when Redis is down."""
    return redis.Redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout_s,
                                socket_connect_timeout=settings.redis_timeout_s, health_check_interval=30)


class JobStore:
    """Creates, reads, and deletes jobs. Every Redis failure surfaces as :class:`StoreUnavailable`."""

    def __init__(self, conn: redis.Redis, settings: ServiceSettings) -> None:
        self.redis, self.settings = conn, settings
        self.keys = Keys(settings.key_prefix)
        self.queue = Queue(settings.queue_name, connection=conn, serializer=JSONSerializer)
        self._delete_ours = conn.register_script(DELETE_OURS)
        self.storage = open_storage(settings)

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except REDIS_ERRORS:
            return False

    def live_workers(self) -> int:
        try:
            return len(Worker.all(queue=self.queue))
        except REDIS_ERRORS as exc:
            raise StoreUnavailable("Redis does not answer") from exc

    def model_names(self) -> list[str]:
        """Names of the models live workers announced (empty before any worker started)."""
        return sorted(as_text(name) for name in self.redis.hkeys(self.keys.models))

    def find_duplicate(self, owner: str, sha256: str, options: JobOptions) -> JobRecord | None:
        """The live job for the same content and options of the same owner, if any."""
        job_id = self.redis.get(self.keys.dedup(owner, dedup_digest(sha256, options)))
        if job_id is None:
            return None
        try:
            record = self.get(as_text(job_id), owner)
        except JobNotFound:
            return None
        return None if record.status in (JobStatus.failed, JobStatus.canceled) else record

    def create(self, record: JobRecord) -> JobRecord:
        """Store the record and its dedup entry, then enqueue the analysis. A job from a source URL gets its dedup
        entry from the worker, once the content is known."""
        if record.sha256:
            record.dedup_key = self.keys.dedup(record.owner, dedup_digest(record.sha256, record.options))
        ttl = self.settings.result_ttl_s
        with self.redis.pipeline() as pipe:
            pipe.hset(self.keys.job(record.id), mapping=record.to_redis())
            pipe.expire(self.keys.job(record.id), ttl)
            if record.dedup_key:
                pipe.set(record.dedup_key, record.id, ex=ttl)
            pipe.execute()
        self.queue.enqueue(
            JOB_FUNCTION, record.id, job_id=record.id, job_timeout=self.settings.job_timeout_s,
            retry=Retry(max=self.settings.max_retries) if self.settings.max_retries else None,
            result_ttl=ttl, failure_ttl=ttl, on_failure=Callback(FAILURE_CALLBACK), description=record.filename,
        )
        return record

    def get(self, job_id: str, owner: str) -> JobRecord:
        """The job record, with RQ's verdict merged in; 404 for unknown ids and other owners' jobs."""
        record = JobRecord.read(job_id, self.redis.hgetall(self.keys.job(job_id)))
        if record is None:  # none, or one that cannot be read (logged): gone either way
            raise JobNotFound(f"no job {job_id}")
        if record.owner != owner:
            raise JobNotFound(f"no job {job_id}")  # do not reveal that it exists
        return self._merge_rq_state(record)

    def _merge_rq_state(self, record: JobRecord) -> JobRecord:
        """Our record is the truth unless RQ knows the job failed in a way our code never saw
        (a worker killed with retries exhausted, an expired job)."""
        if record.status.terminal:
            return record
        try:
            job = Job.fetch(record.id, connection=self.redis, serializer=JSONSerializer)
        except NoSuchJobError:
            record.status, record.error = JobStatus.failed, "the job was lost from the queue (expired or Redis reset)"
            return record
        rq_status = job.get_status(refresh=False)
        if rq_status == RQStatus.FAILED:
            result = job.latest_result()
            reason = (result.exc_string or "").strip().splitlines()[-1:] if result else []
            record.status = JobStatus.failed
            record.error = record.error or (scrub_paths(reason[0], {record.upload_ref: record.filename})
                                            if reason else "the worker failed")
        elif rq_status in (RQStatus.CANCELED, RQStatus.STOPPED):
            record.status = JobStatus.canceled
        return record

    def queue_position(self, job_id: str) -> int | None:
        position = self.queue.get_job_position(job_id)
        return None if position is None else int(position)

    def result_json(self, job_id: str) -> bytes | None:
        value = self.redis.get(self.keys.result(job_id))
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else value

    def delete(self, record: JobRecord) -> None:
        """Delete the job whatever its state: our record, result and dedup entry, RQ's job, and the upload.

        Our record goes first, in one step: it is what a worker checks at every progress write, so a running job
        stops within the progress interval, and the worker then removes what RQ wrote after this delete.
        """
        dedup = record.dedup_key or self.keys.job(record.id)
        self._delete_ours(keys=[self.keys.job(record.id), self.keys.result(record.id), dedup], args=[record.id])
        EventIndex(self.redis, self.keys).forget("job", record.id, self.storage)  # after the record: none can follow
        try:
            job = Job.fetch(record.id, connection=self.redis, serializer=JSONSerializer)
        except NoSuchJobError:
            pass
        else:
            job.delete(remove_from_queue=True, delete_dependents=True)
        try:
            self.storage.delete(record.id)
        except StorageError as exc:  # the record is gone: the supervisor's sweep removes the orphaned upload
            log.warning("the upload of deleted job %s stays until the sweep removes it: %s", record.id, exc)
        self.delete_evidence("job", record.id)

    def delete_evidence(self, kind: SourceKind, source_id: str) -> None:
        """Delete the evidence of a deleted job's or stream's events (a worker still writing some deletes it)."""
        try:
            delete_source_evidence(self.redis, self.keys, self.storage, kind, source_id)
        except StorageError as exc:  # the retention sweep removes it later
            log.warning("evidence of deleted %s %s stays until the retention sweep removes it: %s", kind, source_id,
                        exc)

    def queue_depth(self) -> int:
        return len(self.queue)
