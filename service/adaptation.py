"""A stream's per-camera bundles, the API's side: start an adaptation, read the lineage, promote, roll back, forget.

The adaptation itself runs in a worker (:data:`vad.bundles.ADAPT_FUNCTION`, enqueued by name: the API imports no
torch); the rules and the transitions of the stream's bundles hash are :mod:`vad.bundles`' (the worker applies the
same ones when it promotes a shadow by itself).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from typing import Any

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from service.exceptions import BundleConflict
from service.settings import ServiceSettings
from vad.bundles import ADAPT_FUNCTION, BUNDLES_DIR, AdaptationStatus, BundleBook
from vad.exceptions import BundleRefused
from vad.keys import Keys
from vad.storage.base import Storage
from vad.storage.features import FEATURES_DIR, NORMAL_INFIX

SHADOW_EVENTS_SHOWN = 50


class StreamBundleStore:
    """Every call may raise redis' connection errors (503 upstream)."""

    def __init__(self, conn: redis.Redis, settings: ServiceSettings, storage: Storage) -> None:
        self.redis, self.settings, self.storage = conn, settings, storage
        self.keys = Keys(settings.key_prefix)
        self.queue = Queue(settings.queue_name, connection=conn, serializer=JSONSerializer)

    def book(self, stream_id: str) -> BundleBook:
        """The stream's bundles; an adaptation whose job RQ no longer runs (its worker died, it timed out) is shown
        as failed, with that reason."""
        book = BundleBook.read(self.redis.hgetall(self.keys.stream_bundles(stream_id)))
        status = book.adaptation
        if status is None or status.state not in ("queued", "running") or self._alive(status.job_id):
            return book
        lost = status.model_copy(update={"state": "failed", "reason": "its job ended without a result (the worker "
                                                                    "stopped or the job timed out); adapt again"})
        return dataclasses.replace(book, adaptation=lost)

    def _alive(self, job_id: str) -> bool:
        try:
            job = Job.fetch(job_id, connection=self.redis, serializer=JSONSerializer)
        except NoSuchJobError:
            return False
        return job.get_status(refresh=False) in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED,
                                                 JobStatus.SCHEDULED)

    def shadow_events(self, stream_id: str) -> list[dict[str, Any]]:
        raw: Any = self.redis.lrange(self.keys.stream_shadow(stream_id), 0, SHADOW_EVENTS_SHOWN - 1)
        return [json.loads(item) for item in raw]

    def adapt(self, stream_id: str) -> AdaptationStatus:
        """Queue an adaptation of the stream (one at a time per stream).

        Raises:
            BundleConflict: One is queued or running.
        """
        running = self.book(stream_id).adaptation
        if running is not None and running.state in ("queued", "running"):
            raise BundleConflict(f"adaptation {running.job_id} is {running.state} ({running.stage or 'waiting'}); "
                                 "wait for it to end")
        status = AdaptationStatus(job_id=f"adapt-{secrets.token_hex(8)}", state="queued", stage="queued")
        self.redis.hset(self.keys.stream_bundles(stream_id), "adaptation", status.to_json())
        self.queue.enqueue(ADAPT_FUNCTION, stream_id, job_id=status.job_id, job_timeout=self.settings.job_timeout_s,
                           result_ttl=self.settings.result_ttl_s, failure_ttl=self.settings.result_ttl_s,
                           description=f"adapt stream {stream_id}")
        return status

    def promote(self, stream_id: str, force: bool) -> None:
        """Make the shadow active (the shadow rule, unless ``force``).

        Raises:
            BundleConflict: Nothing in shadow, the rule does not hold, or the bundles changed meanwhile.
        """
        self._apply(stream_id, lambda book: book.promote(self.settings.adapt_shadow_min_snippets, force))

    def rollback(self, stream_id: str) -> None:
        """Make the active bundle's parent active again.

        Raises:
            BundleConflict: The stream runs the deployment's model, or the bundles changed meanwhile.
        """
        self._apply(stream_id, lambda book: book.rollback())

    def _apply(self, stream_id: str, transition: Any) -> None:
        book = self.book(stream_id)
        try:
            updates = transition(book)
        except BundleRefused as exc:
            raise BundleConflict(str(exc)) from exc
        if not book.apply(self.redis, self.keys.stream_bundles(stream_id), updates):
            raise BundleConflict("the stream's bundles changed meanwhile (a promotion or a rollback); read them "
                                 "again and retry")

    def forget(self, stream_id: str) -> None:
        """Delete a deleted stream's bundles, their lineage, its shadow's events and its normal windows."""
        self.redis.delete(self.keys.stream_bundles(stream_id), self.keys.stream_shadow(stream_id))
        keys = [o.key for prefix in (f"{BUNDLES_DIR}/{stream_id}/", f"{FEATURES_DIR}/{stream_id}{NORMAL_INFIX}")
                for o in self.storage.list_objects(prefix)]
        if keys:
            self.storage.delete_objects(keys)
