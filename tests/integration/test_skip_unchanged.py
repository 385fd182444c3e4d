"""Skipping unchanged scenes keeps the demo model's accuracy: on held-out videos static for 80 % of their time, the
scene-change gate at the live streams' default threshold saves encoder calls, moves the frame AUC by at most
0.005 and finds the same events within 0.5 s (bench/streams.py measures more videos and shares)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.static_scenes import compare_skipping, static_videos
from workers.analyzer import Analyzer
from workers.demo.build import demo_settings
from workers.settings import WorkerSettings

pytestmark = pytest.mark.slow


def test_skipping_unchanged_scenes_saves_encoder_calls_and_keeps_the_scores(demo_bundle: Path, tmp_path: Path
                                                                             ) -> None:
    videos = static_videos(tmp_path, share=0.8, count=4)
    analyzer = Analyzer(demo_bundle, demo_settings())
    threshold = WorkerSettings.model_fields["stream_skip_unchanged"].default
    found = compare_skipping(analyzer, videos, share=0.8, threshold=threshold)
    assert found.saved >= 0.5, found  # of 0.8 static: each static run's first snippet and all events are encoded
    assert abs(found.auc_skip - found.auc_all) <= 0.005, found
    assert found.worst_event_shift_s() <= 0.5, found
    assert sum(map(len, found.events_all)) >= 3  # the comparison is about events that were found
