"""Adaptation of one stream in a worker: its data from Redis and the storage, the job, and its bundles for streams.

:func:`adapt_stream` gathers the stream's reviewed events (their saved feature windows, cut as ``vad
export-reviews`` cuts them) and its saved normal windows, fine-tunes from the stream's active bundle (or the
deployment's model) with :mod:`workers.adaptation`, applies :func:`vad.bundles.offline_rule`, stores the candidate
(``.bundles/<stream id>/<bundle id>.safetensors``) and records its lineage; a passing one becomes the stream's shadow.
``adapt_stream_job`` is the RQ job the API enqueues (:data:`vad.bundles.ADAPT_FUNCTION`); ``vad adapt`` calls
:func:`adapt_stream` in its own process. Progress and failure go to the stream's ``adaptation`` field.

:class:`StreamHeads` gives a worker's streams their per-camera heads: each bundle is loaded once per process
(DSANet weights and class embeddings only; the CLIP encoder is the process's one) and dropped when no stream of
the process uses it.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rq import get_current_job

from model.bundle import Bundle, file_sha256, load_bundle, save_bundle
from model.config import DSANetConfig
from vad.bundles import AdaptationStatus, BundleBook, BundleLineage, bundle_key, offline_rule
from vad.events import read_record
from vad.keys import Keys
from vad.storage.base import Storage
from vad.storage.features import FeatureStore, normal_window_name
from vad.streams import StreamRecord
from workers.adaptation import Sample, fine_tune, split
from workers.encode.clip_encoder import resolve_device
from workers.exceptions import WorkerError
from workers.reviews import cut_stream_event
from workers.runtime.context import JobContext, get_context

log = logging.getLogger(__name__)


def _array(data: bytes) -> np.ndarray:
    array = np.load(io.BytesIO(data), allow_pickle=False)
    if array.ndim != 2 or not len(array):
        raise ValueError(f"saved features of shape {array.shape}, not [T, D]")
    return array.astype(np.float32, copy=False)


def stream_samples(conn: Any, keys: Keys, store: FeatureStore, stream_id: str, cfg: DSANetConfig,
                   normal_windows: int) -> tuple[list[Sample], list[dict[str, str]]]:
    """The stream's reviewed events and saved normal windows as samples, and what was skipped (with why)."""
    labels = {spec.name: spec.label for spec in cfg.classes}
    normal = cfg.classes[0].label
    samples: list[Sample] = []
    skipped: list[dict[str, str]] = []
    members = conn.zrange(keys.events_of_source("stream", stream_id), 0, -1)
    for member in members:
        event_id = (member.decode() if isinstance(member, bytes) else str(member)).split(":", 1)[-1]
        raw = conn.hgetall(keys.event(event_id))
        record = read_record(raw)
        if record is None or record.verdict is None or record.state != "closed":
            continue
        try:
            data = store.get(event_id)
            if data is None:
                raise ValueError("no saved features (saved when a stream event closes)")
            true = record.verdict.verdict == "true_alert"
            label = labels.get(record.class_) if true else normal
            if label is None:
                raise ValueError(f"class {record.class_!r} is not one of the model's {sorted(labels)}")
            cut = cut_stream_event(_array(data), json.loads(raw[b"event"] if b"event" in raw else raw["event"]))
        except ValueError as exc:
            skipped.append({"id": event_id, "why": str(exc)})
            continue
        samples.append(Sample(event_id, "true_alert" if true else "false_alarm", cut.features, label,
                              cut.event_rows if true else None))
    for slot in range(normal_windows):
        name = normal_window_name(stream_id, slot)
        data = store.get(name)
        if data is not None:
            samples.append(Sample(name, "normal", _array(data), normal))
    return samples, skipped


def load_stream_bundle(storage: Storage, stream_id: str, bundle_id: str) -> Bundle:
    """A per-camera bundle from the storage (checked against its digest).

    Its tensors map a temporary copy of the file, which is unlinked at once: the mapping lives as long as the
    tensors (POSIX), and only the pages inference touches become resident (DSANet's training-only SGNM refiner,
    two thirds of the UCF weights, never is). Copying the tensors instead would make every page resident.
    """
    data = storage.get_bytes(bundle_key(stream_id, bundle_id), 1 << 30)
    if data is None:
        raise WorkerError(f"bundle {bundle_id} of stream {stream_id} is not in the storage")
    with tempfile.TemporaryDirectory(prefix="vad-bundle-") as folder:
        path = Path(folder) / "bundle.safetensors"
        path.write_bytes(data)
        return load_bundle(path, load_clip=False)


class _Status:
    """The stream's ``adaptation`` field, and the RQ job's meta when there is one."""

    def __init__(self, conn: Any, keys: Keys, stream_id: str, job_id: str) -> None:
        self.conn, self.key, self.status = conn, keys.stream_bundles(stream_id), AdaptationStatus(job_id=job_id,
                                                                                                  state="running")
        self.job = get_current_job()

    def __call__(self, stage: str, fraction: float, **changes: Any) -> None:
        self.status = self.status.model_copy(update={"stage": stage, "percent": round(100 * fraction, 1),
                                                     "at": time.time(), **changes})
        self.conn.hset(self.key, "adaptation", self.status.to_json())
        if self.job is not None:
            self.job.meta.update(stage=stage, percent=self.status.percent)
            self.job.save_meta()


def adapt_stream(ctx: JobContext, stream_id: str, job_id: str | None = None,
                 base_of: Callable[[str], Bundle] | None = None) -> BundleLineage:
    """Fine-tune a candidate for the stream from its verdicts and normal windows, judge it, record it.

    Args:
        ctx: The worker's context (settings, Redis, storage, models).
        stream_id: The stream.
        job_id: The RQ job's id (shown in the stream's ``adaptation`` field).
        base_of: The deployment's bundle of a model name (default: the worker's loaded model's).

    Raises:
        WorkerError: No such stream, or too few verdicts (the message says how many more).
    """
    if not ctx.redis.exists(ctx.keys.stream(stream_id)):  # nothing is written for a stream that is not there
        raise WorkerError(f"no stream {stream_id} (deleted, or its retention ended)")
    status = _Status(ctx.redis, ctx.keys, stream_id, job_id or f"local-{secrets.token_hex(4)}")
    try:
        return _adapt(ctx, stream_id, status, base_of or (lambda name: ctx.analyzer(name).predictor.bundle))
    except Exception as exc:
        reason = str(exc) if isinstance(exc, (WorkerError, ValueError)) else f"{type(exc).__name__}: {exc}"
        status("failed", status.status.percent / 100, state="failed", reason=reason)
        raise


def _adapt(ctx: JobContext, stream_id: str, status: Callable[..., None], base_of: Callable[[str], Bundle]
           ) -> BundleLineage:
    conn, keys, settings = ctx.redis, ctx.keys, ctx.settings
    record = StreamRecord.read(stream_id, conn.hgetall(keys.stream(stream_id)))
    if record is None:
        raise WorkerError(f"no stream {stream_id} (deleted, or its retention ended)")
    status("reading verdicts", 0.0)
    base_name = record.model or ctx.default_model
    base = base_of(base_name)
    book = BundleBook.read(conn.hgetall(keys.stream_bundles(stream_id)))
    parent = load_stream_bundle(ctx.storage, stream_id, book.active) if book.active else base
    samples, skipped = stream_samples(conn, keys, FeatureStore(ctx.storage), stream_id, parent.config,
                                      settings.stream_normal_windows)
    train, held = split(samples, settings.adapt_holdout)
    status("training", 0.05)
    adapted = fine_tune(base, parent, train, held, epochs=settings.adapt_epochs, lr=settings.adapt_lr,
                        device=str(resolve_device(settings.device)),
                        progress=lambda stage, fraction: status(stage, 0.05 + 0.9 * fraction))
    ok, why = offline_rule(adapted.metrics)
    bundle_id = f"b-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="vad-adapt-") as folder:
        path = Path(folder) / "bundle.safetensors"
        sha = save_bundle(adapted.bundle, path)
        assert file_sha256(path) == sha
        ctx.storage.put_file(bundle_key(stream_id, bundle_id), path, "application/octet-stream")
        size = path.stat().st_size
    entry = BundleLineage(
        id=bundle_id, stream_id=stream_id, parent=book.active or None, base_model=base_name,
        base_sha256=base.sha256 or "", created_at=time.time(), state="shadow" if ok else "rejected", reason=why,
        data={**adapted.data, "skipped": skipped}, training=adapted.training, metrics=adapted.metrics,
        size_bytes=size, sha256=sha)
    if not book.apply(conn, keys.stream_bundles(stream_id), book.candidate(entry)):
        fresh = BundleBook.read(conn.hgetall(keys.stream_bundles(stream_id)))  # promoted or rolled back meanwhile
        fresh.apply(conn, keys.stream_bundles(stream_id), fresh.candidate(entry))
    status("finished", 1.0, state="finished", bundle_id=bundle_id, reason=why)
    log.info("stream %s: adapted bundle %s is %s (%s)", stream_id, bundle_id, entry.state, why)
    return entry


def adapt_stream_job(stream_id: str) -> dict[str, Any]:
    """RQ job: :func:`adapt_stream` for the stream (a failure ends the job, its reason in the stream's field)."""
    job = get_current_job()
    entry = adapt_stream(get_context(), stream_id, job.id if job is not None else None)
    return {"bundle_id": entry.id, "state": entry.state, "reason": entry.reason}


class StreamHeads:
    """Per-camera DSANet heads of one worker process, loaded once, shared by its streams' runners.

    Args:
        storage: Where the bundles are.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._heads: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, stream_id: str, bundle_id: str, engine: Any) -> Any:
        """The head of ``bundle_id`` (``""``: ``None``, the engine's model), loading it on first use."""
        if not bundle_id:
            return None
        with self._lock:
            key = (stream_id, bundle_id)
            if key not in self._heads:
                self._heads[key] = engine.head(load_stream_bundle(self.storage, stream_id, bundle_id))
                log.info("stream %s: loaded bundle %s", stream_id, bundle_id)
            return self._heads[key]

    def keep(self, used: set[tuple[str, str]]) -> None:
        """Drop the heads no stream uses any more."""
        with self._lock:
            for key in [k for k in self._heads if k not in used]:
                del self._heads[key]

