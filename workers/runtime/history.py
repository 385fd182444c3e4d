"""A finished job's events in the event history (:mod:`vad.events`), and its snippet features for verdicts.

Called by :func:`workers.runtime.jobs.analyze_job`: the features are saved (``.features/<job id>.npy``,
:mod:`vad.storage.features`) before the job's finish is recorded, so that an event listed in the history has them
for ``vad export-reviews``, and removed again when the job was deleted meanwhile; the events are indexed once the
finish is recorded. A failure to save the features is logged and costs only that.
"""

from __future__ import annotations

import io
import json
import logging
import uuid

import numpy as np

from vad.events import ADD_JOB, event_member
from vad.exceptions import StorageError
from vad.jobstate import JobRecord
from vad.storage.features import FeatureStore
from workers.runtime.context import JobContext

log = logging.getLogger(__name__)


def npy_bytes(features: np.ndarray) -> bytes:
    """``numpy.save`` bytes of ``[T, D]`` float32 features (the VadCLIP feature format)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(features, dtype=np.float32))
    return buffer.getvalue()


def with_fresh_event_ids(result_json: str) -> str:
    """A result reused from an earlier job, with new event ids: each job's events are its own in the history."""
    doc = json.loads(result_json)
    for event in doc.get("events", []):
        event["id"] = str(uuid.uuid4())
    return json.dumps(doc)


def save_job_features(ctx: JobContext, job_id: str, features: np.ndarray | None) -> bool:
    """Save a job's ``[n, D]`` snippet features before its finish is recorded; whether they were saved."""
    if features is None:
        return False
    try:
        FeatureStore(ctx.storage).put(job_id, npy_bytes(features))
    except StorageError as exc:
        log.warning("the features of job %s were not saved (verdicts on its events cannot be exported): %s",
                    job_id, exc)
        return False
    return True


def drop_job_features(ctx: JobContext, job_id: str) -> None:
    """Remove the features of a job deleted while it finished (else the sweep does, later)."""
    try:
        FeatureStore(ctx.storage).delete(job_id)
    except StorageError as exc:
        log.warning("the features of deleted job %s stay until the sweep removes them: %s", job_id, exc)


def index_job_events(ctx: JobContext, record: JobRecord, result_json: str, finished_at: float) -> int:
    """Index a finished job's events (:data:`vad.events.ADD_JOB`: only while the job's record exists); how many."""
    doc = json.loads(result_json)
    threshold = float(doc.get("settings", {}).get("threshold", record.options.threshold))
    rows = []
    for event in doc.get("events", []):
        if not isinstance(event.get("id"), str):
            continue  # a result of a version before event ids
        member = event_member(finished_at, event["id"])
        fields = {"source": "job", "source_id": record.id, "source_name": record.filename, "owner": record.owner,
                  "threshold": threshold, "event": event, "state": "closed", "at": finished_at, "member": member}
        rows.append({"id": event["id"], "member": member, "fields": {k: json.dumps(v) for k, v in fields.items()}})
    if not rows:
        return 0
    keys = ctx.keys
    return int(ctx.redis.register_script(ADD_JOB)(
        keys=[keys.job(record.id), keys.events_of_owner(record.owner), keys.events_of_source("job", record.id)],
        args=[keys.event(""), ctx.settings.result_ttl_s, json.dumps(rows)]))
