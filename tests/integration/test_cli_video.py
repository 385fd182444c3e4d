"""`vad analyze` and `vad extract` through the command line, in-process, on synthetic videos and a tiny bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import tiny_bundle
from vad.cli import app
from vad.schema import AnalysisResult
from workers.synthetic import Event, make_video

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import dataclasses

    from model.bundle import save_bundle

    root = tmp_path_factory.mktemp("cli_video")
    bundle = root / "demo.safetensors"
    save_bundle(dataclasses.replace(tiny_bundle("ucf", seed=5), demo=True), bundle)
    video = make_video(root / "street.mp4", duration_s=3.0, size=(96, 64), events=[Event("flash", 1.0, 2.0)]).path
    return {"root": root, "bundle": bundle, "video": video}


def test_analyze_writes_the_result_and_the_plot(assets: dict[str, Path], tmp_path: Path) -> None:
    out, png = tmp_path / "result.json", tmp_path / "timeline.png"
    result = runner.invoke(app, ["analyze", str(assets["video"]), "--bundle", str(assets["bundle"]), "-o", str(out),
                                 "--plot", str(png), "--frame-scores", "--threshold", "0.0"])
    assert result.exit_code == 0, result.output
    parsed = AnalysisResult.model_validate_json(out.read_text())
    assert len(parsed.timeline.score) == 5 and len(parsed.frame_scores or []) == 75
    assert parsed.model.demo and parsed.model.label == "synthetic demo model"
    assert len(parsed.events) == 1 and parsed.events[0].end_s == 3.0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "SYNTHETIC DEMO MODEL" in result.stderr and "event" in result.stderr and result.stdout == ""


def test_analyze_prints_json_without_output(assets: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAD_BUNDLE", str(assets["bundle"]))
    result = runner.invoke(app, ["analyze", str(assets["video"]), "-q", "--crop", "center"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["settings"]["crop"] == "center" and "events" in doc and "class_probs" in doc["timeline"]


@pytest.mark.parametrize(("make", "match"), [
    (lambda d: d.joinpath("notes.mp4").write_text("hello") and d / "notes.mp4", "not a video container"),
    (lambda d: d / "nothing.mp4", "does not exist"),
])
def test_analyze_bad_input_exits_2_with_a_readable_error(assets: dict[str, Path], tmp_path: Path, make,
                                                         match: str) -> None:
    result = runner.invoke(app, ["analyze", str(make(tmp_path)), "-b", str(assets["bundle"]), "-q"])
    assert result.exit_code == 2 and "error: cannot use" in result.stderr and match in result.stderr
    assert "Traceback" not in result.output


def test_analyze_configuration_errors(assets: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAD_BUNDLE", raising=False)
    result = runner.invoke(app, ["analyze", str(assets["video"])])
    assert result.exit_code == 2 and "vad import-checkpoint" in result.stderr
    result = runner.invoke(app, ["analyze", str(assets["video"]), "-b", str(assets["bundle"]), "--crop", "middle"])
    assert result.exit_code == 2 and "crop must be 'auto' or one of" in result.stderr
    monkeypatch.setenv("VAD_THRESHOLD", "two")
    result = runner.invoke(app, ["analyze", str(assets["video"]), "-b", str(assets["bundle"])])
    assert result.exit_code == 2 and "threshold" in result.stderr


def test_extract_is_resumable_and_reports_bad_videos(assets: dict[str, Path], tmp_path: Path) -> None:
    videos, out = tmp_path / "videos", tmp_path / "features"
    (videos / "Fighting").mkdir(parents=True)
    make_video(videos / "Fighting" / "fight1.mp4", frames=33, size=(64, 48))
    (videos / "Fighting" / "cut.mp4").write_bytes(assets["video"].read_bytes()[:2000])
    args = ["extract", str(videos), "-o", str(out), "-b", str(assets["bundle"]), "-q"]
    first = runner.invoke(app, args)
    assert first.exit_code == 1, first.output
    assert "1 extracted, 0 already done, 1 failed" in first.stderr and "cut.mp4" in first.stderr
    assert sorted(p.name for p in (out / "Fighting").iterdir()) == [f"fight1__{k}.npy" for k in range(10)]
    second = runner.invoke(app, args)
    assert "0 extracted, 1 already done, 1 failed" in second.stderr
    lines = (out / "list.csv").read_text().splitlines()
    assert lines[0] == "path,label" and len(lines) == 11 and lines[1] == "Fighting/fight1__0.npy,Fighting"


def test_extract_single_view_follows_the_bundle_preset(assets: dict[str, Path], tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    make_video(videos / "a.mp4", frames=20, size=(64, 48))
    result = runner.invoke(app, ["extract", str(videos), "-o", str(tmp_path / "f"), "--crops", "1",
                                 "-b", str(assets["bundle"]), "-q"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "f").glob("*.npy")] == ["a__5.npy"]  # UCF: the mirrored centre crop
    assert "warning: 1 of 1 videos lie directly in" in result.stderr and "labels them 'videos'" in result.stderr
    assert (tmp_path / "f" / "list.csv").read_text().splitlines()[1] == "a__5.npy,videos"
    labelled = runner.invoke(app, ["extract", str(videos), "-o", str(tmp_path / "f"), "--crops", "1", "--label",
                                   "Normal", "-b", str(assets["bundle"]), "-q"])
    assert labelled.exit_code == 0 and "warning" not in labelled.stderr
    assert (tmp_path / "f" / "list.csv").read_text().splitlines()[1] == "a__5.npy,Normal"
    assert runner.invoke(app, ["extract", str(videos), "-o", str(tmp_path / "g"), "--crops", "3"]).exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["extract", str(empty), "-o", str(tmp_path / "h")])
    assert result.exit_code == 2 and "no video files" in result.stderr
