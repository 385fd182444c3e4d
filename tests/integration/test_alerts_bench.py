"""bench/alerts.py in its small form (one new camera, 2 minutes of calibration and 1 of test footage, the demo model):
the batched replay matches OnlineScorer, every step is reported, and the steps only ever raise the threshold. Sanity
only: the figures of the full form are in docs/alerts.md."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_the_small_form_runs_through_the_online_scorer_and_reports_every_step(demo_bundle: Path) -> None:
    from bench.alerts import CAMERAS, run, table
    from workers.settings import WorkerSettings
    from workers.stream import StreamEngine

    engine = StreamEngine(demo_bundle, WorkerSettings(device="cpu", frame_pick="middle"))
    report = run(small=True, cameras=CAMERAS[:1], engine=engine)
    assert report["replay_max_difference"] < 1e-4
    camera = report["cameras"][0]
    assert camera["anomalies"] == 1 and 0.5 < camera["auc"] <= 1 and 0 <= camera["laap"] <= 1
    steps = camera["steps"]
    assert [s["step"] for s in steps] == ["out of the box", "calibrated (2.08333 min)", "5 verdicts",
                                         "5 false-alarm verdicts"]
    assert steps[0]["threshold"] == 0.5 <= steps[1]["threshold"] <= min(steps[2]["threshold"], steps[3]["threshold"])
    assert steps[1]["calibration"]["normal_s"] == pytest.approx(125.0, abs=0.5)
    assert all(0 <= s["recall"] <= 1 and s["fa_per_hour"] >= 0 for s in steps)
    assert "| shopfront | out of the box |" in table(report)
