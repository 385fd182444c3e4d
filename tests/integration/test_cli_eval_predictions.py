"""`vad eval --predictions` for predictions a user brings (no bundle, no feature files), through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import vad.cli.commands.training  # noqa: F401 - registers the commands on the shared app
from model.benchmark.protocol import read_feature_list
from model.bundle import save_bundle
from model.config import load_preset
from tests.conftest import tiny_bundle, tiny_config
from vad.cli.app import app

runner = CliRunner()
WIDTH = 64


def run(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def invoke(*args: object) -> str:
    code, output = run(*args)
    assert code == 0, output
    return output


def refused(*args: object) -> str:
    code, output = run(*args)
    assert code == 2, output
    return " ".join(output.split())  # the error box wraps lines


@pytest.fixture(scope="module")
def preset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("presets") / "tiny_ucf.json"
    path.write_text(tiny_config("ucf", WIDTH).replace(visual_length=64).to_json())
    return path


@pytest.fixture(scope="module")
def root(preset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data") / "ucf"
    invoke("synth-features", "--preset", preset, "-o", folder, "--scale", "0.02", "--max-snippets", "48", "--width",
           WIDTH, "--signal", "8")
    return folder


def list_videos(preset: Path, root: Path) -> list[tuple[str, int, str, int]]:
    """(video, crop, label, snippets) of each test video, from the list and the feature files."""
    cfg = load_preset(preset)
    entries = read_feature_list(root / "list" / cfg.training.test_list, root, cfg.training.list_prefix)
    return [(e.video, e.crop, e.label, len(np.load(e.path, mmap_mode="r"))) for e in entries]


def write_predictions(folder: Path, videos: list[tuple[str, int, str, int]], fmt: str = "npz", seed: int = 0,
                      shorten_anomalous: int = 0, **meta: Any) -> Path:
    """Per test video, random scores of its length as a user's own model might write them."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for video, crop, label, count in videos:
        count -= shorten_anomalous if label != "Normal" else 0
        anomaly = rng.random(count).astype(np.float32)
        probs = rng.dirichlet(np.ones(14), size=count).astype(np.float32)
        if fmt == "npz":
            arrays: dict[str, Any] = {k: np.array(v) for k, v in meta.items()}
            arrays.update(anomaly=anomaly, class_probs=probs)
            np.savez(folder / f"{video}__{crop}.npz", **arrays)
        else:
            (folder / f"{video}.json").write_text(json.dumps({**meta, "anomaly": anomaly.tolist(),
                                                              "class_probs": probs.tolist()}))
    return folder


def test_eval_scores_predictions_without_a_bundle(preset: Path, root: Path, tmp_path: Path) -> None:
    videos = list_videos(preset, root)
    predictions = write_predictions(tmp_path / "preds", videos, fmt="json")
    out = invoke("eval", "--preset", preset, "--predictions", predictions, "--list-dir", root / "list",
                 "-o", tmp_path / "m.json")
    assert "frame AUC" in out and "mAP avg" in out
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["bundle"] is None and doc["bundle_sha256"] is None and doc["scored"] == "predictions"
    assert doc["predictions"] == {"directory": str(predictions.resolve()), "files": len(videos),
                                  "bundle_sha256": None, "checked_against_bundle": False}
    assert doc["frame_gt"] == "gt_ucf.npy" and doc["videos"] == len(videos)
    again = write_predictions(tmp_path / "npz", videos, fmt="npz")  # the same numbers as .npz: the same metrics
    invoke("eval", "--preset", preset, "--predictions", again, "--list-dir", root / "list", "-o", tmp_path / "n.json")
    npz = json.loads((tmp_path / "n.json").read_text())
    assert (npz["auc"], npz["ap"], npz["average_map"]) == (doc["auc"], doc["ap"], doc["average_map"])
    assert "--predictions" in refused("eval", "--preset", preset, "--features-root", root)  # no bundle, no predictions
    assert "--predictions" in refused("eval", "--preset", preset, "--bundle", tmp_path / "m.json",
                                      "--gt-from-predictions", "--features-root", root)


def test_a_bundle_checks_the_predictions_it_is_given_with(preset: Path, root: Path, tmp_path: Path) -> None:
    videos = list_videos(preset, root)
    bundle = tmp_path / "model.safetensors"
    sha = save_bundle(tiny_bundle("ucf", seed=1), bundle)
    own = write_predictions(tmp_path / "own", videos, bundle_sha256=sha, preset="ucf", demo=False,
                            class_names=load_preset(preset).class_names)  # what `vad score-features` records
    invoke("eval", "--preset", preset, "--bundle", bundle, "--predictions", own, "--list-dir", root / "list",
           "-o", tmp_path / "m.json")
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["bundle_sha256"] == sha and doc["bundle"] == str(bundle)
    assert doc["predictions"]["bundle_sha256"] == sha and doc["predictions"]["checked_against_bundle"] is True
    other = write_predictions(tmp_path / "other", videos, bundle_sha256="0" * 64)
    out = refused("eval", "--preset", preset, "--bundle", bundle, "--predictions", other, "--list-dir", root / "list")
    assert "000000000000" in out and sha[:12] in out
    write_predictions(tmp_path / "names", videos[:1], class_names=["normal", *"abcdefghijklm"])
    write_predictions(tmp_path / "names", videos[1:])
    out = refused("eval", "--preset", preset, "--predictions", tmp_path / "names", "--list-dir", root / "list")
    assert f"{videos[0][0]}__{videos[0][1]}.npz" in out and "class" in out


def test_a_file_whose_anomaly_and_class_probs_differ_in_length_is_refused(preset: Path, root: Path,
                                                                         tmp_path: Path) -> None:
    videos = list_videos(preset, root)
    predictions = write_predictions(tmp_path / "preds", videos)
    video, crop, _, count = videos[len(videos) // 2]
    bad = predictions / f"{video}__{crop}.npz"
    with np.load(bad) as npz:
        np.savez(bad, anomaly=npz["anomaly"], class_probs=npz["class_probs"][:-1])
    out = refused("eval", "--preset", preset, "--predictions", predictions, "--list-dir", root / "list")
    assert bad.name in out and f"{count}" in out and f"{count - 1}" in out


def test_ground_truth_of_other_lengths_is_rebuilt_from_the_predictions(preset: Path, root: Path,
                                                                       tmp_path: Path) -> None:
    videos = list_videos(preset, root)
    predictions = write_predictions(tmp_path / "preds", videos, shorten_anomalous=2)  # another extraction
    base = ("eval", "--preset", preset, "--predictions", predictions)
    out = refused(*base, "--list-dir", root / "list")
    assert "--gt-from-predictions" in out and "vad make-gt" in out and "--predictions" in out
    invoke(*base, "--list-dir", root / "list", "--gt-from-predictions", "-o", tmp_path / "rebuilt.json")
    rebuilt = json.loads((tmp_path / "rebuilt.json").read_text())
    assert rebuilt["frame_gt"].startswith("built from Temporal_Anomaly_Annotation")
    assert rebuilt["frames"] == 16 * (sum(v[3] for v in videos) - 2 * sum(v[2] != "Normal" for v in videos))

    lists = tmp_path / "list"
    shutil.copytree(root / "list", lists)
    out = invoke("make-gt", "--preset", preset, "--predictions", predictions, "--list-dir", lists,
                 "-o", lists / "gt_ucf.npy")
    assert "anomalous" in out
    invoke(*base, "--list-dir", lists, "-o", tmp_path / "written.json")
    written = json.loads((tmp_path / "written.json").read_text())
    assert (written["auc"], written["ap"], written["frames"]) == (rebuilt["auc"], rebuilt["ap"], rebuilt["frames"])
    assert "one of them" in refused("make-gt", "--preset", preset, "-o", tmp_path / "x.npy", "--list-dir", lists)
