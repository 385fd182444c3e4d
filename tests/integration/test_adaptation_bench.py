"""The benchmark's step of verdicts and adaptation in its small form (the depot camera, whose look-alike raises
alarms: a review stretch of 5 minutes, the demo model): verdicts by the truth on the alarms the model in force
raised, vad adapt's fine-tuning and rules, and a measured step. Sanity only: the full form's figures are in
docs/alerts.md."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_the_small_form_adapts_a_camera_from_verdicts_and_measures_it(demo_bundle: Path, one_thread: None) -> None:
    from bench.alerts import CAMERAS, run
    from workers.settings import WorkerSettings
    from workers.stream import StreamEngine

    engine = StreamEngine(demo_bundle, WorkerSettings(device="cpu", frame_pick="middle"))
    depot = next(c for c in CAMERAS if c.name == "depot")
    steps = run(small=True, cameras=[depot], engine=engine, adapt=True)["cameras"][0]["steps"]
    last, info = steps[-1], steps[-1]["adaptation"]
    assert last["step"].endswith("verdicts + adaptation") and info["true_alerts"] + info["false_alarms"] > 0
    assert info["normal_windows"] > 0 and info["training"]["iterations"] > 0
    assert info["outcome"] == "promoted" or info["outcome"].startswith("rejected"), info["outcome"]
    held = info["metrics"]
    assert held["true_alerts"] >= 1 and held["candidate_auc"] is not None and "held-out AUC" in info["rule"]
    assert 0 <= last["recall"] <= 1 and last["fa_per_hour"] >= 0
