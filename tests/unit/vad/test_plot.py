"""The PNG timeline: a flat score at 0 or 1 is drawn inside the frame, and event labels say what their number is."""

from __future__ import annotations

from pathlib import Path

import pytest

from vad.cli.plot import SCORE_COLOUR, event_label, plot_timeline
from vad.schema import AnalysisResult

pytest.importorskip("matplotlib")


def result(score: float, events: list[dict] | None = None) -> AnalysisResult:
    n = 12
    starts = [round(0.64 * i, 6) for i in range(n)]
    return AnalysisResult.model_validate({
        "video": {"filename": "v.mp4", "duration_s": 0.64 * n, "fps": 25.0, "frames": 16 * n, "width": 64,
                  "height": 48, "codec": "h264", "decoder": "pyav"},
        "model": {"preset": "ucf", "bundle_sha256": None, "clip": "ViT-B-16"},
        "settings": {"threshold": 0.5},
        "classes": ["normal", "fighting"],
        "timeline": {"start_s": starts, "end_s": [s + 0.64 for s in starts], "score": [score] * n,
                     "class_probs": [[1.0 - score, score]] * n},
        "summary": {"max_score": score, "mean_score": score, "anomalous": bool(events), "top_classes": []},
        "events": events or [],
        "timings": {"decode_s": 0.0, "encode_s": 0.0, "model_s": 0.0, "total_s": 0.0},
    })


def curve_pixels(png: Path) -> int:
    """Pixels of the score curve's colour (the legend's sample line aside, which is short)."""
    from matplotlib.image import imread

    rgb = imread(str(png))[..., :3]
    red, blue = (int(SCORE_COLOUR[i:i + 2], 16) / 255 for i in (1, 5))
    # anti-aliased pixels of the curve: clearly bluer than red, as the colour is; the frame and text are grey
    return int((rgb[..., 2] - rgb[..., 0] > 0.5 * (blue - red)).sum())


@pytest.mark.parametrize("score", [0.0, 1.0])
def test_a_flat_score_at_the_ends_of_the_range_is_drawn_inside_the_frame(tmp_path: Path, score: float) -> None:
    flat = curve_pixels(plot_timeline(result(score), tmp_path / "flat.png", width_in=6, dpi=100))
    middle = curve_pixels(plot_timeline(result(0.3), tmp_path / "middle.png", width_in=6, dpi=100))
    # the curve of a score of 0 or 1 is as visible as one in the middle, not hidden under the frame's edge
    assert flat >= 0.8 * middle and middle > 400


def test_an_event_label_names_the_peak_score() -> None:
    assert event_label("Fighting", 0.934) == "Fighting (peak 0.93)"


def test_the_plot_writes_a_png_with_an_event(tmp_path: Path) -> None:
    event = {"class": "fighting", "class_prob": 0.9, "start_s": 1.28, "end_s": 3.2, "peak_score": 1.0,
             "mean_score": 1.0}
    path = plot_timeline(result(1.0, [event]), tmp_path / "sub" / "t.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
