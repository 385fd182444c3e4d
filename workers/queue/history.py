"""A finished job's events in the event history (:mod:`vad.events`), and its snippet features for verdicts.

Called by :func:`workers.queue.jobs.analyze_job` once the job's result is recorded. The features are saved first
(``.features/<job id>.npy``, :mod:`vad.storage.features`), so that an event listed in the history always has them
for ``vad export-reviews``; a failure to save them is logged and costs only that (the events are indexed anyway).
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
from workers.queue.context import JobContext

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


def record_job_events(ctx: JobContext, record: JobRecord, result_json: str, finished_at: float,
                      features: np.ndarray | None) -> int:
    """Save the job's features (when given) and index its events (:data:`vad.events.ADD_JOB`: only while the job's
    record exists); how many events were indexed."""
    if features is not None:
        try:
            FeatureStore(ctx.storage).put(record.id, npy_bytes(features))
        except StorageError as exc:
            log.warning("the features of job %s were not saved (verdicts on its events cannot be exported): %s",
                        record.id, exc)
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
