"""Reviewed events as training data: ``vad export-reviews`` writes them as a VadCLIP-format folder ``vad train`` reads.

Each event with a verdict (:meth:`vad.events.EventIndex.reviewed`) becomes one "video": its snippet features and
the context around them, cut from what the workers saved (:mod:`vad.storage.features`) without decoding again:

* a job's event: the job's ``[n, D]`` features, rows of the snippets within ``context_s`` of the event (the times
  from the job's result timeline);
* a stream's event: the window saved when it closed (up to 32 snippets before it, the event, the merge gap after).

A ``false_alarm`` is a normal video (the preset's normal label); a ``true_alert`` an abnormal one labelled with the
event's class (the preset's label of that class name), its ground truth the event's snippets. The folder::

    DIR/Reviews/<label>/<event id>__<crop>.npy     [T, D] float32 (crop: the preset's test crop, the view the
                                                   workers embed by default)
    DIR/list/<train list> and <test list>          path,label (relative paths), the same reviewed videos
    DIR/list/<gt files, annotations>               frame ground truth of the test list, as vad make-gt builds it
    DIR/manifest.json                              what was exported, from where, and what was skipped

The test list holds the same videos as the training list: it is the ground truth ``vad train`` selects its
checkpoint on, not a held-out measure (the next issue's adaptation splits verdicts).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.benchmark.index import IndexedVideo
from model.benchmark.protocol import SNIPPET_FRAMES, feature_file_name, write_feature_list
from model.benchmark.synthetic import SynthVideo, write_ground_truth
from model.config import DSANetConfig
from vad.events import EventRecord
from vad.storage.features import FeatureStore

REVIEWS_DIR = "Reviews"


@dataclass
class ExportReport:
    """What an export wrote and what it had to skip (with why)."""

    exported: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Cut:
    features: np.ndarray
    event_rows: tuple[int, int]  # first and last row (inclusive) of the event's own snippets


def _load(data: bytes) -> np.ndarray:
    array = np.load(io.BytesIO(data), allow_pickle=False)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"saved features of shape {array.shape}, not [T, D]")
    return array.astype(np.float32, copy=False)


def cut_job_event(features: np.ndarray, timeline: dict[str, list[float]], record: EventRecord,
                  context_s: float) -> _Cut:
    """The rows of a job's features within ``context_s`` of the event, and which of them are the event."""
    starts, ends = np.asarray(timeline["start_s"]), np.asarray(timeline["end_s"])
    if len(starts) != len(features):
        raise ValueError(f"{len(features)} saved snippets, {len(starts)} in the result's timeline")
    end = record.end_s if record.end_s is not None else record.start_s
    window = np.flatnonzero((ends > record.start_s - context_s) & (starts < end + context_s))
    inside = np.flatnonzero((ends > record.start_s) & (starts < end))
    if not len(window) or not len(inside):
        raise ValueError("no saved snippet lies within the event")
    return _Cut(features[window[0]:window[-1] + 1], (int(inside[0] - window[0]), int(inside[-1] - window[0])))


def cut_stream_event(features: np.ndarray, event: dict[str, Any]) -> _Cut:
    """A stream event's saved window, and which of its rows are the event (from the snippet indices it recorded)."""
    offset = event.get("features_from_index")
    if not isinstance(offset, int):
        raise ValueError("its close does not say which snippets the saved features cover")
    first, last = int(event["first_index"]) - offset, int(event["last_index"]) - offset
    if first < 0 or last >= len(features) or first > last:
        raise ValueError(f"the event's snippets {event['first_index']}..{event['last_index']} are not all in the "
                         f"saved window of {len(features)} from {offset}")
    return _Cut(features, (first, last))


@dataclass(frozen=True)
class TrainingVideo:
    """One "video" of a training folder: its name (``Reviews/<label>/<id>``), label, ``[T, D]`` features and, for an
    abnormal one, the first and last row (inclusive) of its anomaly."""

    stem: str
    label: str
    features: np.ndarray
    anomaly_rows: tuple[int, int] | None = None


def write_training_folder(out_dir: Path, cfg: DSANetConfig, videos: list[TrainingVideo],
                          test: list[TrainingVideo] | None = None) -> None:
    """Write ``videos`` as a VadCLIP-format folder ``vad train`` reads: feature files (the preset's test crop), the
    training list, the test list (``test``, or the same videos) and the test list's ground truth. Nothing is
    written for no videos."""
    if not videos:
        return
    crop = cfg.training.test_crop

    def rows_and_plans(items: list[TrainingVideo]) -> tuple[list[tuple[str, str]], list[SynthVideo]]:
        rows: list[tuple[str, str]] = []
        plans: list[SynthVideo] = []
        for video in items:
            path = out_dir / feature_file_name(video.stem, crop)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, np.asarray(video.features, dtype=np.float32))
            n = len(video.features)
            first, last = video.anomaly_rows or (0, -1)
            intervals = () if video.anomaly_rows is None else \
                ((first * SNIPPET_FRAMES, (last + 1) * SNIPPET_FRAMES, video.label),)
            plans.append(SynthVideo(len(plans), IndexedVideo(video.stem, video.label, (crop,), n), n, intervals))
            rows.append((feature_file_name(video.stem, crop), video.label))
        return rows, plans

    train_rows, train_plans = rows_and_plans(videos)
    test_rows, test_plans = rows_and_plans(test) if test else (train_rows, train_plans)
    list_dir = out_dir / "list"
    list_dir.mkdir(parents=True, exist_ok=True)
    write_feature_list(list_dir / Path(cfg.training.train_list).name, train_rows)
    write_feature_list(list_dir / Path(cfg.training.test_list).name, test_rows)
    write_ground_truth(list_dir, cfg, test_plans)


def export_reviews(records: list[EventRecord], store: FeatureStore, cfg: DSANetConfig, out_dir: Path, *,
                   result_of: Callable[[str], str | None], raw_event: Callable[[str], dict[str, Any] | None],
                   context_s: float = 10.0) -> ExportReport:
    """Write the reviewed events ``records`` as a training folder in ``out_dir`` (see the module's text).

    Args:
        result_of: A job's result JSON by job id (for its timeline), ``None`` when gone.
        raw_event: A stream event as its close recorded it, by event id (for its snippet indices).
    """
    labels = {spec.name: spec.label for spec in cfg.classes}
    normal = cfg.classes[0].label
    report, videos = ExportReport(), list[TrainingVideo]()
    cache: dict[str, np.ndarray | None] = {}
    for record in records:
        assert record.verdict is not None
        label = normal if record.verdict.verdict == "false_alarm" else labels.get(record.class_)
        try:
            if label is None:
                raise ValueError(f"class {record.class_!r} is not one of the preset's {sorted(labels)}")
            cut = _cut(record, store, cache, result_of, raw_event, context_s)
        except ValueError as exc:
            report.skipped.append({"id": record.id, "why": str(exc)})
            continue
        video = TrainingVideo(f"{REVIEWS_DIR}/{label}/{record.id}", label, cut.features,
                              None if label == normal else cut.event_rows)
        videos.append(video)
        report.exported.append({"id": record.id, "source": record.source, "source_id": record.source_id,
                                "verdict": record.verdict.verdict, "label": label, "snippets": len(cut.features),
                                "event_snippets": list(cut.event_rows),
                                "file": feature_file_name(video.stem, cfg.training.test_crop)})
    write_training_folder(out_dir, cfg, videos)
    (out_dir / "manifest.json").write_text(json.dumps(
        {"kind": "reviews", "preset": cfg.name, "exported_at": time.time(), "context_s": context_s,
         "events": report.exported, "skipped": report.skipped}, indent=1) + "\n")
    return report


def _cut(record: EventRecord, store: FeatureStore, cache: dict[str, np.ndarray | None],
         result_of: Callable[[str], str | None], raw_event: Callable[[str], dict[str, Any] | None],
         context_s: float) -> _Cut:
    name = record.source_id if record.source == "job" else record.id
    if name not in cache:
        data = store.get(name)
        cache[name] = _load(data) if data is not None else None
    features = cache[name]
    if features is None:
        raise ValueError(f"no saved features for {record.source} {name} (saved when a job ends or a stream event "
                         "closes; not for results reused from an earlier job or events of a worker that died)")
    if record.source == "job":
        result = result_of(record.source_id)
        if result is None:
            raise ValueError(f"the result of job {record.source_id} is gone")
        return cut_job_event(features, json.loads(result)["timeline"], record, context_s)
    event = raw_event(record.id)
    if event is None:
        raise ValueError("its record is gone")
    return cut_stream_event(features, event)
