"""synth-features, make-gt, train and eval end to end through the CLI, on tiny synthetic benchmarks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import vad.cli.commands.model
import vad.cli.commands.training  # noqa: F401 - registers the commands on the shared app
from model.bundle import load_bundle
from tests.conftest import TINY_CLIP, random_clip_state_dict, tiny_config
from vad.cli.app import app

runner = CliRunner()
WIDTH = 64


def invoke(*args: str | Path) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def refused(*args: str | Path) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    return result.output


@pytest.fixture(scope="module")
def presets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("presets")
    paths = {}
    for name in ("ucf", "xd"):
        paths[name] = folder / f"tiny_{name}.json"
        paths[name].write_text(tiny_config(name, WIDTH).replace(visual_length=64).to_json())
    return paths


@pytest.fixture(scope="module")
def data(presets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    roots = {}
    for name, preset in presets.items():
        roots[name] = tmp_path_factory.mktemp("data") / name
        out = invoke("synth-features", "--preset", preset, "-o", roots[name], "--scale", "0.02", "--max-snippets",
                     "48", "--width", WIDTH, "--signal", "8")
        assert "SYNTHETIC" in out
    return roots


def test_synth_features_layout_and_refusals(data: dict[str, Path], presets: dict[str, Path]) -> None:
    ucf = data["ucf"]
    assert (ucf / "list" / "ucf_CLIP_rgb.csv").is_file() and (ucf / "list" / "gt_ucf.npy").is_file()
    assert (ucf / "UCFClipFeatures" / "Abuse").is_dir() and (data["xd"] / "XDTestClipFeatures").is_dir()
    assert json.loads((ucf / "manifest.json").read_text())["synthetic"] is True
    assert "already holds a dataset" in refused("synth-features", "--preset", presets["ucf"], "-o", ucf)
    assert "--scale" in refused("synth-features", "--preset", "ucf", "-o", ucf.parent / "new", "--scale", "2")


def test_make_gt_rebuilds_the_frame_ground_truth(data: dict[str, Path], presets: dict[str, Path],
                                                 tmp_path: Path) -> None:
    for name, gt_name in (("ucf", "gt_ucf.npy"), ("xd", "gt.npy")):
        out = invoke("make-gt", "--preset", presets[name], "--features-root", data[name], "-o", tmp_path / gt_name)
        assert "anomalous" in out
        assert np.array_equal(np.load(tmp_path / gt_name), np.load(data[name] / "list" / gt_name))
    assert "not found" in refused("make-gt", "--preset", presets["ucf"], "--features-root", tmp_path, "-o",
                                  tmp_path / "x.npy", "--list-dir", data["ucf"] / "list")


def test_make_gt_checks_normal_lengths_against_gt_segment(data: dict[str, Path], presets: dict[str, Path],
                                                          tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(data["ucf"], root)
    normal = next((root / "UCFClipFeatures" / "Testing_Normal_Videos_Anomaly").glob("*__5.npy"))
    np.save(normal, np.load(normal)[:-1])
    out = refused("make-gt", "--preset", presets["ucf"], "--features-root", root, "-o", tmp_path / "gt.npy")
    assert normal.name.removesuffix("__5.npy") in out and "--force" in out
    invoke("make-gt", "--preset", presets["ucf"], "--features-root", root, "-o", tmp_path / "gt.npy", "--force")


def test_train_then_eval_on_features_and_on_saved_predictions(data: dict[str, Path], presets: dict[str, Path],
                                                              tmp_path: Path) -> None:
    run, bundle = tmp_path / "run", tmp_path / "model.safetensors"
    out = invoke("train", "--preset", presets["ucf"], "--features-root", data["ucf"], "--random-clip", "--epochs", "2",
                 "--batch-size", "16", "--eval-every", "4", "--lr", "1e-3", "--run-dir", run, "-o", bundle,
                 "--workers", "0", "--no-progress")
    assert "wrote" in out and "DEMO" in out
    records = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert {"train", "eval", "epoch"} <= {r["kind"] for r in records}
    assert {"l1_coarse", "l7_compactness", "total", "lr_main", "lr_sgnm"} <= set(records[0])
    trained = load_bundle(bundle)
    assert trained.demo and trained.has_text_tower and trained.source["kind"] == "trained"
    assert trained.source["synthetic_data"] is True and "random CLIP" in trained.source["clip"]
    assert trained.source["epochs"] == 2 and trained.config.training.lr == 1e-3

    out = invoke("eval", "--bundle", bundle, "--preset", presets["ucf"], "--features-root", data["ucf"],
                 "-o", tmp_path / "metrics.json")
    assert "frame AUC" in out and "mAP avg" in out and "SYNTHETIC DEMO MODEL" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["auc"] == pytest.approx(trained.source["best_metric"], abs=1e-6)  # eval reproduces the selection
    assert set(metrics["map"]) == {"0.1", "0.2", "0.3", "0.4", "0.5"}

    predictions = tmp_path / "predictions"
    predictions.mkdir()
    for features in sorted(data["ucf"].rglob("*__5.npy")):
        invoke("score-features", features, "--bundle", bundle, "-o", predictions / f"{features.stem}.npz")
    invoke("eval", "--bundle", bundle, "--preset", presets["ucf"], "--predictions", predictions,
           "--list-dir", data["ucf"] / "list", "-o", tmp_path / "from_predictions.json")
    again = json.loads((tmp_path / "from_predictions.json").read_text())
    for key in ("auc", "ap", "average_map"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-6)
    assert "not those of preset" in refused("eval", "--bundle", bundle, "--preset", presets["xd"], "--features-root",
                                            data["xd"])


def test_train_needs_one_clip_source(data: dict[str, Path], presets: dict[str, Path], tmp_path: Path) -> None:
    base = ("train", "--preset", presets["ucf"], "--features-root", data["ucf"], "--run-dir", tmp_path)
    out = refused(*base)
    assert "--clip-weights" in out and "--init-bundle" in out and "--random-clip" in out
    torch.save(random_clip_state_dict(TINY_CLIP), tmp_path / "clip.pt")
    assert "exactly one" in refused(*base, "--random-clip", "--clip-weights", tmp_path / "clip.pt")
    assert "--init-bundle" in refused(*base, "--random-clip", "--finetune")


def test_stop_and_resume_through_the_cli(data: dict[str, Path], presets: dict[str, Path], tmp_path: Path) -> None:
    args = ("train", "--preset", presets["ucf"], "--features-root", data["ucf"], "--random-clip", "--epochs", "1",
            "--batch-size", "16", "--eval-every", "3", "--run-dir", tmp_path, "--workers", "0", "--no-progress",
            "--no-eval-map")
    assert "stopped after 2 iterations; continue with --resume" in invoke(*args, "--stop-after", "2")
    assert "--resume" in refused(*args)
    invoke(*args, "--resume")
    steps = [json.loads(line)["step"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps == list(range(len(steps))) and len(steps) > 2  # one log, no iteration repeated or skipped
    assert load_bundle(tmp_path / "model.safetensors").source["iterations"] == len(steps)


def test_train_xd_with_a_clip_weights_file(data: dict[str, Path], presets: dict[str, Path], tmp_path: Path) -> None:
    torch.save(random_clip_state_dict(TINY_CLIP, seed=3), tmp_path / "clip.pt")
    invoke("train", "--preset", presets["xd"], "--features-root", data["xd"], "--clip-weights", tmp_path / "clip.pt",
           "--epochs", "1", "--batch-size", "32", "--run-dir", tmp_path / "run", "--workers", "0", "--no-progress")
    trained = load_bundle(tmp_path / "run" / "model.safetensors")
    assert trained.has_image_tower and trained.has_text_tower and trained.source["clip"] == "file clip.pt"
    assert trained.source["select_metric"] == "ap" and trained.config.label_format == "multi_hot"
    out = invoke("eval", "--bundle", tmp_path / "run" / "model.safetensors", "--preset", presets["xd"],
                 "--features-root", data["xd"], "-o", tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["ap"] == pytest.approx(trained.source["best_metric"], abs=1e-6)
    assert "XD-Violence" in out


def test_train_on_a_relative_path_list_like_vad_extract_writes(data: dict[str, Path], presets: dict[str, Path],
                                                               tmp_path: Path) -> None:
    root = data["ucf"]
    prefix = "/data/VAD/UCFCrime/"
    rows = (root / "list" / "ucf_CLIP_rgb.csv").read_text().splitlines()
    (tmp_path / "list.csv").write_text("\n".join(row.removeprefix(prefix) for row in rows) + "\n")
    out = invoke("train", "--preset", presets["ucf"], "--features-root", root, "--train-list", tmp_path / "list.csv",
                 "--random-clip", "--batch-size", "16", "--run-dir", tmp_path / "run", "--workers", "0",
                 "--no-progress", "--stop-after", "1")
    assert "stopped after 1 iterations" in out
    assert "not found" in refused("train", "--preset", presets["ucf"], "--features-root", root, "--train-list",
                                  tmp_path / "missing.csv", "--random-clip", "--run-dir", tmp_path / "run2")
