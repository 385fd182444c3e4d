"""The test protocol on a benchmark folder: ground truth checks, model evaluation, saved predictions."""

from __future__ import annotations

import json
from pathlib import Path

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
    np.savez(tmp_path / f"{entries[0].video}__{entries[0].crop}.npz", anomaly=anomaly[0], class_probs=probs[0])
    (tmp_path / f"{entries[1].video}.json").write_text(json.dumps({"anomaly": anomaly[1].tolist(),
                                                                   "class_probs": probs[1].tolist()}))
    got_anomaly, got_probs = load_predictions(tmp_path, entries)
    for got, want in zip((*got_anomaly, *got_probs), (*anomaly, *probs), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(EvaluationError, match="score-features"):
        load_predictions(tmp_path, read_test_entries(files)[:3])
