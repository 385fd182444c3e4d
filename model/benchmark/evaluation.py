"""One way to evaluate on a benchmark folder and to build its frame ground truth: what ``vad eval`` and
``vad make-gt`` run.

As :func:`model.train.run.train_bundle` serves ``vad train``, :func:`evaluate_on_benchmark` and
:func:`build_frame_truth` do the work of the two commands (read the test list, score a bundle or read saved
predictions, build or read the ground truth, the metrics and their provenance); the command line parses its
options, calls them and prints. Every failure is a :class:`~model.exceptions.ModelError` whose message says what
to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.benchmark.groundtruth import load_gt_segments
from model.benchmark.protocol import SNIPPET_FRAMES, feature_length
from model.benchmark.testset import (
    BenchmarkFiles,
    BenchmarkMetrics,
    SavedPredictions,
    TestSet,
    evaluate_predictions,
    frame_gt_from_annotations,
    load_ground_truth,
    load_predictions,
    normal_length_mismatches,
    read_test_entries,
    score_with_bundle,
)
from model.bundle import Bundle, load_bundle
from model.config import DSANetConfig
from model.exceptions import ConfigError, DataError, EvaluationError


@dataclass(frozen=True)
class FrameTruth:
    """The frame ground truth of a test list, built from its annotations.

    Attributes:
        frame_gt: One 0/1 label per frame, 16 frames per snippet, videos in test-list order.
        videos: Test videos.
        snippets: Snippets of all test videos.
        problems: Normal test videos whose snippet count disagrees with ``gt_segment`` (features of another
            extraction or crop); empty when that file is absent.
    """

    frame_gt: np.ndarray
    videos: int
    snippets: int
    problems: list[str]


def build_frame_truth(files: BenchmarkFiles, predictions: Path | None = None) -> FrameTruth:
    """The frame ground truth of ``files``' test list from its annotations and the snippet counts: of the feature
    files (``files.features_root``), or of the saved predictions in ``predictions`` (no feature files needed).

    Raises:
        ModelError: A list, feature file, prediction or annotation is missing or inconsistent.
    """
    cfg = files.cfg
    entries = read_test_entries(files)
    counts = ([feature_length(entry.path, cfg.visual_width) for entry in entries] if predictions is None
              else load_predictions(predictions, entries, cfg.class_names).lengths)
    frame_gt = frame_gt_from_annotations(files, entries, counts)
    problems = (normal_length_mismatches(cfg, entries, counts, load_gt_segments(files.gt_segments, files.gt_labels))
                if files.gt_segments.is_file() and files.gt_labels.is_file() else [])
    if len(frame_gt) != SNIPPET_FRAMES * sum(counts):
        raise EvaluationError(f"built {len(frame_gt)} frames, expected {SNIPPET_FRAMES} x {sum(counts)} snippets of "
                              "the test list")
    return FrameTruth(frame_gt, len(entries), sum(counts), problems)


@dataclass(frozen=True)
class BenchmarkEvaluation:
    """An evaluation's metrics and its record (what was scored, against which ground truth, and the metrics).

    Attributes:
        metrics: Frame AUC/AP and detection mAP.
        record: JSON-ready: preset, dataset, bundle and its digest, demo flag, what was scored, test list, frame
            ground truth, and the metrics.
    """

    metrics: BenchmarkMetrics
    record: dict[str, Any]


def evaluate_on_benchmark(
    cfg: DSANetConfig,
    list_dir: Path,
    features_root: Path | None,
    *,
    bundle: Path | None = None,
    predictions: Path | None = None,
    gt_from_predictions: bool = False,
    device: str = "cpu",
    precision: str = "fp32",
    gt_remedy: Callable[[Path], str] = lambda _: "rebuild it for these features",
) -> BenchmarkEvaluation:
    """The official evaluation on the test list of ``list_dir``: a bundle run on the test features, or saved
    predictions (``cfg`` then gives the classes; a ``bundle`` given with them must be the one they record).

    Args:
        cfg: The preset, with the command's list overrides.
        list_dir: The lists, annotations and ground truth.
        features_root: Root of the feature files (replaces the lists' prefix); not needed with ``predictions``.
        bundle: The bundle to run (or to check the predictions against).
        predictions: Folder of saved predictions.
        gt_from_predictions: Build the frame ground truth from the annotations and the predictions' lengths
            instead of reading the list folder's file.
        device: Where the bundle runs.
        precision: ``fp32`` (the official outputs), ``bf16`` or ``fp16``.
        gt_remedy: What to do when the frame ground truth file does not fit, given its path (the message's end).

    Raises:
        ModelError: Missing or inconsistent inputs; the message says which and what to do.
    """
    if predictions is None and (bundle is None or features_root is None):
        raise EvaluationError("scoring needs a bundle and the test features, or saved predictions")
    if gt_from_predictions and predictions is None:
        raise EvaluationError("the ground truth is built from the lengths of saved predictions: give predictions")
    labels = [c.label for c in cfg.classes]
    loaded = load_bundle(bundle, load_clip=False) if bundle is not None else None
    if loaded is not None and [c.label for c in loaded.config.classes] != labels:
        raise ConfigError(f"the bundle's classes ({loaded.class_names}) are not those of preset {cfg.name!r}")
    files = BenchmarkFiles(loaded.config.replace(training=cfg.training) if loaded else cfg, list_dir, features_root)
    entries = read_test_entries(files)
    saved = None
    if predictions is not None:
        saved = load_predictions(predictions, entries, cfg.class_names)
        _check_recorded_bundle(saved.bundle_sha256, loaded, predictions)
        anomaly, probs = saved.anomaly, saved.class_probs
    else:
        assert loaded is not None
        anomaly, probs = score_with_bundle(loaded, entries, device, precision)
    counts = [len(a) for a in anomaly]
    frame_gt, segments = load_ground_truth(files, entries, counts, from_annotations=gt_from_predictions,
                                           remedy=gt_remedy(files.frame_gt))
    metrics = evaluate_predictions(anomaly, probs, TestSet(entries, [], frame_gt, segments), labels)
    lengths = "prediction" if predictions is not None else "feature"
    built = f"built from {files.annotations.name} and the {lengths} lengths"
    record = {"preset": cfg.name, "dataset": cfg.dataset, **_provenance(bundle, loaded, saved, precision),
              "test_list": files.test_list.name,
              "frame_gt": built if gt_from_predictions or not files.frame_gt.is_file() else files.frame_gt.name,
              **metrics.to_dict()}
    return BenchmarkEvaluation(metrics, record)


def _provenance(bundle: Path | None, loaded: Bundle | None, saved: SavedPredictions | None,
                precision: str) -> dict[str, Any]:
    """Where the scores of an evaluation came from: the bundle run, or saved predictions (and their bundle)."""
    if saved is None:
        assert loaded is not None
        return {"bundle": str(bundle), "bundle_sha256": loaded.sha256, "demo": loaded.demo,
                "scored": f"model ({precision})", "predictions": None}
    checked = loaded is not None and saved.bundle_sha256 is not None
    return {"bundle": str(bundle) if bundle is not None else None,
            "bundle_sha256": loaded.sha256 if loaded is not None else saved.bundle_sha256,
            "demo": loaded.demo if loaded is not None else bool(saved.demo), "scored": "predictions",
            "predictions": saved.source(checked_against_bundle=checked)}


def _check_recorded_bundle(recorded: str | None, loaded: Bundle | None, predictions: Path) -> None:
    """Refuse predictions that record another bundle than the one given with them."""
    if loaded is None or recorded is None or recorded == loaded.sha256:
        return
    raise DataError(f"the predictions in {predictions} were made by bundle {recorded[:12]}…, not by the given bundle "
                    f"({(loaded.sha256 or '')[:12]}…); pass the bundle that wrote them, or none.")
