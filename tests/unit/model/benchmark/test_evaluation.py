"""``model.benchmark.evaluation``: what ``vad make-gt`` and ``vad eval`` run, without the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.benchmark.evaluation import build_frame_truth, evaluate_on_benchmark
from model.benchmark.index import packaged_index
from model.benchmark.protocol import SNIPPET_FRAMES, feature_stem
from model.benchmark.synthetic import SynthOptions, write_synthetic_benchmark
from model.benchmark.testset import BenchmarkFiles, read_test_entries
from model.config import DSANetConfig
from model.exceptions import EvaluationError
from tests.conftest import tiny_config

WIDTH = 64


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory: pytest.TempPathFactory) -> tuple[DSANetConfig, Path]:
    cfg = tiny_config("ucf", WIDTH)
    root = tmp_path_factory.mktemp("ucf")
    write_synthetic_benchmark(root, cfg, packaged_index("ucf"), SynthOptions(0.02, 24, WIDTH, 0, 8.0))
    return cfg, root


def _perfect_predictions(cfg: DSANetConfig, root: Path, folder: Path) -> None:
    """Predictions that score each snippet by the share of its frames that are anomalous (frame AUC and AP near 1:
    only snippets across an event's boundary score some frames wrongly)."""
    files = BenchmarkFiles(cfg, root / "list", root)
    truth = build_frame_truth(files).frame_gt
    start = 0
    for entry in read_test_entries(files):
        n = len(np.load(entry.path, mmap_mode="r"))
        anomaly = truth[start:start + SNIPPET_FRAMES * n].reshape(n, SNIPPET_FRAMES).mean(axis=1).astype(np.float32)
        probs = np.full((n, len(cfg.class_names)), 1.0 / len(cfg.class_names), np.float32)
        np.savez(folder / f"{feature_stem(entry.video, entry.crop)}.npz", anomaly=anomaly, class_probs=probs)
        start += SNIPPET_FRAMES * n


def test_frame_truth_from_the_feature_lengths_and_from_predictions(benchmark, tmp_path: Path) -> None:
    cfg, root = benchmark
    files = BenchmarkFiles(cfg, root / "list", root)
    truth = build_frame_truth(files)
    assert truth.videos == len(read_test_entries(files)) and truth.problems == []
    assert len(truth.frame_gt) == SNIPPET_FRAMES * truth.snippets and 0 < truth.frame_gt.mean() < 1
    _perfect_predictions(cfg, root, tmp_path)
    from_predictions = build_frame_truth(BenchmarkFiles(cfg, root / "list", None), predictions=tmp_path)
    assert np.array_equal(from_predictions.frame_gt, truth.frame_gt)


def test_evaluating_saved_predictions_records_what_was_scored(benchmark, tmp_path: Path) -> None:
    cfg, root = benchmark
    _perfect_predictions(cfg, root, tmp_path)
    evaluation = evaluate_on_benchmark(cfg, root / "list", None, predictions=tmp_path, gt_from_predictions=True)
    assert evaluation.metrics.auc > 0.95 and evaluation.metrics.ap > 0.9
    record = evaluation.record
    assert (record["scored"], record["bundle"], record["predictions"]["files"]) == \
        ("predictions", None, evaluation.metrics.videos)
    assert record["frame_gt"].startswith("built from") and record["auc"] == evaluation.metrics.auc


def test_inputs_that_cannot_be_scored_are_refused(benchmark) -> None:
    cfg, root = benchmark
    with pytest.raises(EvaluationError, match="needs a bundle"):
        evaluate_on_benchmark(cfg, root / "list", root)
    with pytest.raises(EvaluationError, match="saved predictions"):
        evaluate_on_benchmark(cfg, root / "list", root, bundle=root / "x.safetensors", gt_from_predictions=True)
