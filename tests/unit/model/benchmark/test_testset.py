"""The test protocol on a benchmark folder: ground truth checks, model evaluation, saved predictions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.benchmark.index import packaged_index
from model.benchmark.synthetic import SynthOptions, write_synthetic_benchmark
from model.benchmark.testset import (
    BenchmarkFiles,
    evaluate_model,
    evaluate_predictions,
    load_ground_truth,
    load_predictions,
    load_test_set,
    normal_length_mismatches,
    read_test_entries,
)
from model.exceptions import EvaluationError
from model.factory import create_model
from model.inference import DSANetPredictor
from tests.conftest import tiny_bundle, tiny_config

WIDTH = 64
NAMES = tiny_config("ucf", WIDTH).class_names


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> BenchmarkFiles:
    root = tmp_path_factory.mktemp("bench")
    cfg = tiny_config("ucf", WIDTH)
    write_synthetic_benchmark(root, cfg, packaged_index("ucf"), SynthOptions(scale=0.02, max_snippets=300, width=WIDTH))
    return BenchmarkFiles(cfg, root / "list", root)


def test_evaluate_model_equals_scoring_with_the_saved_bundle(files: BenchmarkFiles) -> None:
    bundle = tiny_bundle("ucf", seed=4)
    test = load_test_set(files)
    assert max(test.snippet_counts) > 256  # chunked videos are part of the check
    metrics = evaluate_model(create_model(bundle.config, bundle, with_text_tower=True), test)  # fresh text features
    predictor = DSANetPredictor(bundle)
    scores = [predictor.score(f) for f in test.features]
    labels = [c.label for c in bundle.config.classes]
    expected = evaluate_predictions([s.anomaly for s in scores], [s.class_probs for s in scores], test, labels)
    assert metrics.auc == pytest.approx(expected.auc, abs=1e-6) and metrics.ap == pytest.approx(expected.ap, abs=1e-6)
    assert metrics.average_map == pytest.approx(expected.average_map, abs=1e-4)
    assert set(metrics.to_dict()) == {"auc", "ap", "map", "average_map", "videos", "frames"}
    assert "mAP@0.5" in metrics.table() and "frame AUC" in metrics.table()
    assert evaluate_predictions([s.anomaly for s in scores], None, test, labels).average_map is None


def test_ground_truth_must_match_the_snippet_counts(files: BenchmarkFiles) -> None:
    entries = read_test_entries(files)
    test = load_test_set(files)
    counts = list(test.snippet_counts)
    frame_gt, _ = load_ground_truth(files, entries, counts)
    assert np.array_equal(frame_gt, test.frame_gt)
    with pytest.raises(EvaluationError, match="make-gt"):
        load_ground_truth(files, entries, [c + 1 for c in counts])
    segments = test.segments
    normal = next(i for i, e in enumerate(entries) if e.label == "Normal")
    counts[normal] += 3
    problems = normal_length_mismatches(files.cfg, entries, counts, segments)
    assert len(problems) == 1 and entries[normal].video in problems[0]


def test_saved_predictions_are_read_from_npz_or_json(files: BenchmarkFiles, tmp_path: Path) -> None:
    entries = read_test_entries(files)[:2]
    rng = np.random.default_rng(0)
    anomaly, probs = [rng.random(5), rng.random(7)], [rng.random((5, 14)), rng.random((7, 14))]
    np.savez(tmp_path / f"{entries[0].video}__{entries[0].crop}.npz", anomaly=anomaly[0], class_probs=probs[0],
             bundle_sha256=np.array("ab" * 32), class_names=np.array(NAMES))
    (tmp_path / f"{entries[1].video}.json").write_text(json.dumps({"anomaly": anomaly[1].tolist(),
                                                                   "class_probs": probs[1].tolist()}))
    saved = load_predictions(tmp_path, entries, NAMES)
    for got, want in zip((*saved.anomaly, *saved.class_probs), (*anomaly, *probs), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert saved.lengths == [5, 7] and saved.bundle_sha256 == "ab" * 32
    assert saved.source() == {"directory": str(tmp_path.resolve()), "files": 2, "bundle_sha256": "ab" * 32,
                              "checked_against_bundle": False}
    with pytest.raises(EvaluationError, match="score-features"):
        load_predictions(tmp_path, read_test_entries(files)[:3])



def _save(folder: Path, name: str, anomaly: Any, class_probs: Any, **meta: Any) -> Path:
    path = folder / name
    if path.suffix == ".npz":
        arrays: dict[str, Any] = {k: np.array(v) for k, v in meta.items()}
        np.savez(path, anomaly=anomaly, class_probs=class_probs, **arrays)
    else:
        path.write_text(json.dumps({"anomaly": anomaly, "class_probs": class_probs, **meta}))
    return path


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_a_prediction_file_whose_lengths_differ_is_refused_by_name(files: BenchmarkFiles, tmp_path: Path,
                                                                    suffix: str) -> None:
    entry = read_test_entries(files)[0]
    probs = np.full((6, 14), 1 / 14).tolist()
    path = _save(tmp_path, f"{entry.video}__{entry.crop}{suffix}", [0.5] * 7, probs)
    with pytest.raises(EvaluationError, match=rf"{path.name}.*7 .*6 ") as caught:
        load_predictions(tmp_path, [entry])
    assert str(path) in str(caught.value)


def test_prediction_files_are_checked_against_the_classes_and_each_other(files: BenchmarkFiles,
                                                                         tmp_path: Path) -> None:
    first, second = read_test_entries(files)[:2]
    probs = np.full((3, 14), 1 / 14)
    _save(tmp_path, f"{first.video}.npz", np.zeros(3), probs, bundle_sha256="a" * 64)
    _save(tmp_path, f"{second.video}.npz", np.zeros(3), probs, bundle_sha256="b" * 64)
    with pytest.raises(EvaluationError, match="different bundles"):
        load_predictions(tmp_path, [first, second])
    _save(tmp_path, f"{second.video}.npz", np.zeros(3), probs[:, :13])
    with pytest.raises(EvaluationError, match=rf"{second.video}\.npz.* 13 columns.* 14 classes"):
        load_predictions(tmp_path, [second], NAMES)
    _save(tmp_path, f"{second.video}.npz", np.zeros(3), probs, class_names=NAMES[::-1])
    with pytest.raises(EvaluationError, match=rf"{second.video}\.npz.*class names"):
        load_predictions(tmp_path, [second], NAMES)
    _save(tmp_path, f"{second.video}.npz", np.zeros((3, 2)), probs)
    with pytest.raises(EvaluationError, match="one score per snippet"):
        load_predictions(tmp_path, [second])
    (tmp_path / f"{second.video}.npz").unlink()
    (tmp_path / f"{second.video}.json").write_text(json.dumps({"anomaly": [0.1]}))
    with pytest.raises(EvaluationError, match=rf"{second.video}\.json.*class_probs"):
        load_predictions(tmp_path, [second])


def test_a_ground_truth_mismatch_names_the_given_remedy(files: BenchmarkFiles) -> None:
    entries = read_test_entries(files)
    counts = load_test_set(files).snippet_counts
    with pytest.raises(EvaluationError, match="--gt-from-predictions"):
        load_ground_truth(files, entries, [c - 1 for c in counts], remedy="rebuild it with --gt-from-predictions")
    frame_gt, _ = load_ground_truth(files, entries, [c - 1 for c in counts], from_annotations=True)
    assert len(frame_gt) == 16 * (sum(counts) - len(counts))
