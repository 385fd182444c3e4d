"""Cutting a reviewed event's features: a job's by the times of its result, a stream's by the snippet indices of its
close."""

from __future__ import annotations

import numpy as np
import pytest

from vad.events import EventRecord
from workers.reviews import cut_job_event, cut_stream_event


def record(start_s: float, end_s: float) -> EventRecord:
    base = "/v1/events/e"
    return EventRecord.model_validate({
        "id": "e", "source": "job", "source_id": "j", "source_name": "v.mp4", "owner": "", "class": "c",
        "class_prob": 0.5, "start_s": start_s, "end_s": end_s, "peak_score": 0.9, "mean_score": 0.8, "opened_at": 1.0,
        "closed_at": 1.0, "state": "closed", "threshold": 0.5,
        "links": {k: base for k in ("self", "snapshot", "thumbnail", "clip", "scores", "verdict", "source")}})


def test_a_job_event_keeps_its_snippets_and_the_context_around_them() -> None:
    features = np.arange(40, dtype=np.float32)[:, None].repeat(2, axis=1)  # 40 snippets of 0.5 s
    timeline = {"start_s": [i * 0.5 for i in range(40)], "end_s": [(i + 1) * 0.5 for i in range(40)]}
    cut = cut_job_event(features, timeline, record(10.0, 12.0), context_s=2.0)
    assert cut.features[:, 0].tolist() == list(range(16, 28)) and cut.event_rows == (4, 7)
    edge = cut_job_event(features, timeline, record(0.0, 1.0), context_s=2.0)
    assert edge.features[0, 0] == 0 and edge.event_rows == (0, 1)
    with pytest.raises(ValueError, match="saved snippets"):
        cut_job_event(features[:10], timeline, record(1.0, 2.0), 2.0)


def test_a_stream_event_is_located_in_its_saved_window() -> None:
    window = np.zeros((20, 2), np.float32)
    cut = cut_stream_event(window, {"first_index": 104, "last_index": 110, "features_from_index": 100})
    assert cut.event_rows == (4, 10) and cut.features is window
    for bad in ({"first_index": 1, "last_index": 2}, {"first_index": 99, "last_index": 110, "features_from_index": 100},
                {"first_index": 104, "last_index": 130, "features_from_index": 100}):
        with pytest.raises(ValueError):
            cut_stream_event(window, bad)
