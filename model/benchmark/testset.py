"""The official test protocol on a benchmark directory (spec A.4 "testing", A.5, E).

A benchmark is the VadCLIP layout: a list directory (the preset's ``train_list``, ``test_list``,
annotation, ``gt_segment*``/``gt_label*`` and frame ground-truth files) and a features root that replaces
the lists' directory prefix. UCF-Crime and XD-Violence differ only in preset fields (file names, the
annotation format, the class labels), never in code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.benchmark.groundtruth import (
    SegmentGroundTruth,
    build_frame_gt,
    load_gt_segments,
    parse_ucf_temporal_annotations,
    parse_xd_annotations,
)
from model.benchmark.metrics import IOU_THRESHOLDS, detection_map, frame_metrics
from model.benchmark.protocol import (
    SNIPPET_FRAMES,
    FeatureEntry,
    LabelEncoder,
    feature_stem,
    load_features,
    read_feature_list,
)
from model.bundle import Bundle
from model.config import DSANetConfig
from model.exceptions import DataError, EvaluationError
from model.inference import DSANetPredictor, score_sequences
from model.network import DSANet


@dataclass(frozen=True)
class BenchmarkFiles:
    """Where a benchmark's lists and ground truth are: ``list_dir`` / the preset's file names."""

    cfg: DSANetConfig
    list_dir: Path
    features_root: Path | None

    def _file(self, name: str) -> Path:
        return self.list_dir / name

    @property
    def train_list(self) -> Path:
        return self._file(self.cfg.training.train_list)

    @property
    def test_list(self) -> Path:
        return self._file(self.cfg.training.test_list)

    @property
    def frame_gt(self) -> Path:
        return self._file(self.cfg.training.gt_file)

    @property
    def gt_segments(self) -> Path:
        return self._file(self.cfg.training.gt_segment_file)

    @property
    def gt_labels(self) -> Path:
        return self._file(self.cfg.training.gt_label_file)

    @property
    def annotations(self) -> Path:
        return self._file(self.cfg.training.annotation_file)

    def read_list(self, path: Path) -> list[FeatureEntry]:
        return read_feature_list(path, self.features_root, self.cfg.training.list_prefix)


def read_test_entries(files: BenchmarkFiles) -> list[FeatureEntry]:
    """The test list, checked to hold one row per video."""
    entries = files.read_list(files.test_list)
    names = [entry.video for entry in entries]
    if len(set(names)) != len(names):
        raise DataError(f"{files.test_list} lists some video more than once; a test list has one crop per video.")
    return entries


def frame_gt_from_annotations(
    files: BenchmarkFiles, entries: Sequence[FeatureEntry], counts: Sequence[int]
) -> np.ndarray:
    """Frame ground truth (spec A.5) from the annotation text file and the snippet counts, in list order."""
    if not files.annotations.is_file():
        raise EvaluationError(f"annotation file not found: {files.annotations} (needed to build "
                              f"{files.cfg.training.gt_file}); it is in VadCLIP's list/ folder.")
    parse = parse_ucf_temporal_annotations if files.cfg.training.annotation_format == "ucf" else parse_xd_annotations
    encoder = LabelEncoder(files.cfg)
    normal = [entry.video for entry in entries if encoder.is_normal(entry.label)]
    return build_frame_gt([e.video for e in entries], counts, parse(files.annotations), SNIPPET_FRAMES, normal)


def normal_length_mismatches(
    cfg: DSANetConfig, entries: Sequence[FeatureEntry], counts: Sequence[int], segments: SegmentGroundTruth
) -> list[str]:
    """Normal test videos whose ``gt_segment`` entry ``[0, 16·m]`` disagrees with their feature length ``n``.

    The official segment files record every normal test video's snippet count, so this catches features
    of another extraction or crop.
    """
    if len(segments.segments) != len(entries):
        return [f"the segment file has {len(segments.segments)} videos, the test list {len(entries)}"]
    encoder = LabelEncoder(cfg)
    problems = []
    for entry, count, intervals in zip(entries, counts, segments.segments, strict=True):
        whole = len(intervals) == 1 and intervals[0][0] == 0
        if encoder.is_normal(entry.label) and whole and intervals[0][1] != SNIPPET_FRAMES * count:
            recorded = intervals[0][1] / SNIPPET_FRAMES
            problems.append(f"{entry.video}: {count} snippets, gt_segment says {recorded:g}")
    return problems


@dataclass
class TestSet:
    """Everything the evaluation needs, in test-list order: features, frame ground truth, segments."""

    __test__ = False  # not a pytest test class, whatever its name

    entries: list[FeatureEntry]
    features: list[np.ndarray]
    frame_gt: np.ndarray
    segments: SegmentGroundTruth

    @property
    def snippet_counts(self) -> list[int]:
        return [len(f) for f in self.features]


def load_ground_truth(
    files: BenchmarkFiles, entries: Sequence[FeatureEntry], counts: Sequence[int], build_missing_gt: bool = True,
    *, from_annotations: bool = False, remedy: str | None = None,
) -> tuple[np.ndarray, SegmentGroundTruth]:
    """Frame ground truth and segments of the test list, checked against the snippet counts.

    Args:
        files: The benchmark files.
        entries: The test list.
        counts: Snippet count of each test video.
        build_missing_gt: Build the frame ground truth from the annotations (as ``vad make-gt``) when the
            preset's ``gt_file`` is absent; otherwise that is an error.
        from_annotations: Build it from the annotations and ``counts`` even when the file exists.
        remedy: What the error of a frame count mismatch tells the user to do (default: ``vad make-gt``).
    """
    if files.frame_gt.is_file() and not from_annotations:
        frame_gt = np.load(files.frame_gt, allow_pickle=False).astype(np.float32).ravel()
    elif build_missing_gt or from_annotations:
        frame_gt = frame_gt_from_annotations(files, entries, counts)
    else:
        raise EvaluationError(f"{files.frame_gt} not found; build it with `vad make-gt`.")
    if len(frame_gt) != SNIPPET_FRAMES * sum(counts):
        raise EvaluationError(f"{files.frame_gt} has {len(frame_gt)} frames but the test videos have "
                              f"{SNIPPET_FRAMES} x {sum(counts)}; "
                              f"{remedy or 'rebuild it with `vad make-gt` for these features'}.")
    segments = load_gt_segments(files.gt_segments, files.gt_labels)
    if len(segments.segments) != len(entries):
        raise EvaluationError(f"{files.gt_segments} has {len(segments.segments)} videos, the test list {len(entries)}.")
    return frame_gt, segments


def load_test_set(files: BenchmarkFiles, build_missing_gt: bool = True) -> TestSet:
    """Load the test features (the list's crop of each video) and the ground truth.

    Raises:
        DataError, EvaluationError: A file is missing or the files disagree.
    """
    entries = read_test_entries(files)
    features = [load_features(entry.path, files.cfg.visual_width) for entry in entries]
    frame_gt, segments = load_ground_truth(files, entries, [len(f) for f in features], build_missing_gt)
    return TestSet(entries, features, frame_gt, segments)


@dataclass(frozen=True)
class SavedPredictions:
    """Per test video, the saved ``anomaly`` ``[n]`` and ``class_probs`` ``[n, C]``, and where they came from.

    Attributes:
        anomaly: Anomaly scores per snippet, in test-list order.
        class_probs: Class probabilities per snippet, in test-list order.
        directory: The folder they were read from.
        files: The file of each video.
        bundle_sha256: The bundle the files record (``vad score-features`` writes it), ``None`` when none does.
        demo: Whether the files record a synthetic demo model (``None`` when none says).
    """

    anomaly: list[np.ndarray]
    class_probs: list[np.ndarray]
    directory: Path
    files: list[Path]
    bundle_sha256: str | None = None
    demo: bool | None = None

    @property
    def lengths(self) -> list[int]:
        return [len(a) for a in self.anomaly]

    def source(self, checked_against_bundle: bool = False) -> dict[str, Any]:
        """What a metrics file records of these predictions."""
        return {"directory": str(self.directory.resolve()), "files": len(self.files),
                "bundle_sha256": self.bundle_sha256, "checked_against_bundle": checked_against_bundle}


def _prediction_file(directory: Path, entry: FeatureEntry) -> Path:
    candidates = [directory / f"{stem}{ext}" for stem in (feature_stem(entry.video, entry.crop), entry.video)
                  for ext in (".npz", ".json")]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise EvaluationError(f"no prediction for {entry.video} in {directory} (looked for {candidates[0].name} "
                              f"and {candidates[-1].name}); score it with `vad score-features`.")
    return found


def _read_prediction(path: Path) -> dict[str, Any]:
    """The fields of one ``.npz``/``.json`` prediction file (arrays as numpy, the rest as Python values)."""
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                doc = {key: npz[key] for key in npz.files}
            return {k: v if k in ("anomaly", "class_probs") else v.tolist() for k, v in doc.items()}
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise EvaluationError(f"{path} cannot be read as a prediction file ({exc}).") from exc


def _check_prediction(path: Path, doc: dict[str, Any], class_names: Sequence[str] | None) -> tuple[np.ndarray, ...]:
    missing = [key for key in ("anomaly", "class_probs") if key not in doc]
    if missing:
        raise EvaluationError(f"{path} has no {' and no '.join(missing)}; a prediction file holds 'anomaly' [n] "
                              "and 'class_probs' [n, classes], as `vad score-features` writes them.")
    anomaly, probs = np.asarray(doc["anomaly"], np.float32), np.asarray(doc["class_probs"], np.float32)
    if anomaly.ndim != 1 or probs.ndim != 2:
        raise EvaluationError(f"{path}: 'anomaly' must be one score per snippet [n] and 'class_probs' one row per "
                              f"snippet [n, classes]; got shapes {anomaly.shape} and {probs.shape}.")
    if len(anomaly) != len(probs):
        raise EvaluationError(f"{path}: 'anomaly' has {len(anomaly)} snippets but 'class_probs' has {len(probs)} "
                              "rows; both must have one entry per snippet of the video (the metrics would "
                              "silently differ). Score the video again.")
    if class_names is not None and probs.shape[1] != len(class_names):
        raise EvaluationError(f"{path}: 'class_probs' has {probs.shape[1]} columns but the preset has "
                              f"{len(class_names)} classes ({', '.join(class_names)}).")
    recorded = doc.get("class_names")
    if class_names is not None and recorded is not None and [str(c) for c in recorded] != list(class_names):
        raise EvaluationError(f"{path} records the class names {list(recorded)}, not the preset's "
                              f"{list(class_names)}; evaluate it with the preset of the model that wrote it.")
    return anomaly, probs


def load_predictions(
    directory: str | Path, entries: Sequence[FeatureEntry], class_names: Sequence[str] | None = None
) -> SavedPredictions:
    """Per test video, the ``anomaly`` and ``class_probs`` saved by ``vad score-features`` (``.npz`` or ``.json``).

    A video's file is ``<video>__<crop>.npz|.json`` or ``<video>.npz|.json`` in ``directory``. Files may
    record ``bundle_sha256``, ``class_names`` and ``demo`` (``vad score-features`` does); predictions of
    one's own model need only the two arrays.

    Args:
        directory: The folder of prediction files.
        entries: The test list.
        class_names: The preset's class names (``cfg.class_names``, the column order of ``class_probs``): each
            file must have one column per class, and the class names it records (if any) must be these.

    Raises:
        EvaluationError: A file is missing or malformed (named in the message), its two arrays differ in
            length, or the files record different bundles.
    """
    directory = Path(directory)
    anomaly, probs, paths = [], [], []
    shas: dict[str, Path] = {}  # each recorded bundle, with the first file that records it
    demo: set[bool] = set()
    for entry in entries:
        path = _prediction_file(directory, entry)
        doc = _read_prediction(path)
        scores, class_probs = _check_prediction(path, doc, class_names)
        anomaly.append(scores)
        probs.append(class_probs)
        paths.append(path)
        if doc.get("bundle_sha256"):
            shas.setdefault(str(doc["bundle_sha256"]), path)
        if doc.get("demo") is not None:
            demo.add(bool(doc["demo"]))
    if len(shas) > 1:
        (sha_a, path_a), (sha_b, path_b) = list(shas.items())[:2]
        raise EvaluationError(f"the predictions in {directory} come from {len(shas)} different bundles ({path_a.name}: "
                              f"{sha_a[:12]}…, {path_b.name}: {sha_b[:12]}…); score every test video with one model.")
    return SavedPredictions(anomaly, probs, directory, paths, next(iter(shas), None), (True in demo) if demo else None)


@dataclass(frozen=True)
class BenchmarkMetrics:
    """Frame AUC/AP of ``σ(logits1)`` (spec E.2) and detection mAP in percent (spec E.3)."""

    auc: float
    ap: float
    map_at: dict[float, float]
    average_map: float | None
    videos: int
    frames: int

    def value(self, metric: str) -> float:
        """The selection metric (``"auc"`` or ``"ap"``)."""
        return self.auc if metric == "auc" else self.ap

    def to_dict(self) -> dict[str, Any]:
        return {"auc": self.auc, "ap": self.ap, "map": {f"{k:.1f}": v for k, v in self.map_at.items()},
                "average_map": self.average_map, "videos": self.videos, "frames": self.frames}

    def table(self) -> str:
        rows = [("frame AUC", f"{100 * self.auc:.2f}"), ("frame AP", f"{100 * self.ap:.2f}")]
        rows += [(f"mAP@{k:.1f}", f"{v:.2f}") for k, v in self.map_at.items()]
        if self.average_map is not None:
            rows.append(("mAP avg", f"{self.average_map:.2f}"))
        return "\n".join(f"{name:<10} {value:>7}" for name, value in rows)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def evaluate_predictions(
    anomaly: Sequence[np.ndarray], class_probs: Sequence[np.ndarray] | None, test: TestSet, class_list: Sequence[str]
) -> BenchmarkMetrics:
    """Metrics of per-video snippet scores; ``class_probs=None`` skips the detection mAP."""
    frames = frame_metrics(list(anomaly), test.frame_gt)
    if class_probs is None:
        return BenchmarkMetrics(frames.auc, frames.ap, {}, None, len(anomaly), len(test.frame_gt))
    detection = detection_map(list(class_probs), test.segments.segments, test.segments.labels, class_list,
                              IOU_THRESHOLDS)
    return BenchmarkMetrics(frames.auc, frames.ap, detection.map_at, detection.average, len(anomaly),
                            len(test.frame_gt))


def score_with_bundle(
    bundle: Bundle, entries: Sequence[FeatureEntry], device: str = "cpu", precision: str = "fp32"
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per test video, a bundle's anomaly scores and class probabilities (its stored text features, official test
    procedure), as ``vad score-features`` would give them."""
    predictor = DSANetPredictor(bundle, device=device, precision=precision)
    sequences = [torch.from_numpy(load_features(e.path, bundle.config.visual_width)) for e in entries]
    scores = score_sequences(predictor.model, sequences, predictor.text_features, bundle.config.test_temperature,
                             predictor.max_chunks, precision)
    return [s.anomaly for s in scores], [s.class_probs for s in scores]


def evaluate_model(
    model: DSANet, test: TestSet, with_map: bool = True, max_chunks: int = 64, precision: str = "fp32"
) -> BenchmarkMetrics:
    """Run the official test procedure with ``model`` as it is now (on its device) and score it.

    The class text features are computed afresh from the model's current weights. The official
    training loop instead reuses the text features cached at its first evaluation (spec C.4), which
    only changes the mAP it prints during training (AUC/AP depend on ``logits1`` alone).
    """
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        text = model.text_encoder()
    sequences = [torch.from_numpy(f) for f in test.features]
    scores = score_sequences(model, sequences, text, model.cfg.test_temperature, max_chunks, precision)
    model.train(was_training)
    probs = [s.class_probs for s in scores] if with_map else None
    return evaluate_predictions([s.anomaly for s in scores], probs, test, [c.label for c in model.cfg.classes])
