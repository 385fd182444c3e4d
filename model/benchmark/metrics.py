"""The official evaluation protocol (spec E.2-E.4): frame AUC/AP and fine-grained detection mAP.

numpy and scikit-learn only. UCF-Crime and XD-Violence share every step; they differ only in ``class_list``:
a ground-truth label that is not in it gives no ground truth (UCF normal videos are labelled ``'A'``, so UCF's
class 0 has AP 0 yet counts in the mean, while XD's ``'A'`` is class 0). Intervals are ``[start, end)`` in
frames; snippet predictions are repeated ``snippet_frames`` times to reach frames.

Ties in score are broken by a stable sort (earlier video, then earlier proposal first); the official code uses
numpy's default sort, which is not stable beyond 16 elements. Precision follows the official environment
(numpy 1.x): proposal scores are float64, the threshold is compared with the frame values in their own dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from model.benchmark.protocol import SNIPPET_FRAMES
from model.exceptions import EvaluationError

IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
KAPPA_TOP_DIVISOR = 16  # κ averages the floor(F / 16) largest frame values, whatever the snippet length
THRESHOLD_RATIO = 0.6
MIN_PROPOSAL_FRAMES = 2
KAPPA_WEIGHT = 0.7
NMS_IOU = 0.6


@dataclass(frozen=True)
class FrameMetrics:
    """Frame-level ROC AUC and average precision of the anomaly score (spec E.2)."""

    auc: float
    ap: float


class Segments(NamedTuple):
    """Scored ``[start, end)`` frame intervals as parallel arrays: int64, int64, float64 ``[K]``."""

    starts: np.ndarray
    ends: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class Event:
    """One class-labelled proposal of a video (spec E.4): frames ``[start, end)``."""

    class_index: int
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class DetectionMAP:
    """Detection mAP (spec E.3).

    Attributes:
        map_at: IoU threshold → mAP in percent (0 where some class had no proposal at all).
        average: Mean of ``map_at`` over the thresholds, in percent.
        class_ap: IoU threshold → AP of each class in ``[0, 1]``, in class-list order.
        classes_without_proposals: Classes no video proposed; their presence zeroes every ``map_at``.
    """

    map_at: dict[float, float]
    average: float
    class_ap: dict[float, tuple[float, ...]]
    classes_without_proposals: tuple[int, ...]


def expand_to_frames(values: np.ndarray, snippet_frames: int = SNIPPET_FRAMES) -> np.ndarray:
    """Repeat each snippet row ``snippet_frames`` times: frame ``f`` gets snippet ``f // snippet_frames``."""
    if snippet_frames < 1:
        raise EvaluationError(f"snippet_frames must be >= 1, got {snippet_frames}.")
    return np.repeat(np.asarray(values), snippet_frames, axis=0)


def frame_metrics(
    snippet_scores: Sequence[np.ndarray], frame_gt: np.ndarray, snippet_frames: int = SNIPPET_FRAMES
) -> FrameMetrics:
    """Frame AUC and AP of per-snippet anomaly scores pooled over all test videos (spec E.2).

    Args:
        snippet_scores: Per video, in test-list order, its anomaly scores ``[n_i]``.
        frame_gt: 0/1 frame labels of the same videos ``[snippet_frames * sum(n_i)]`` (see ``build_frame_gt``).
        snippet_frames: Frames per snippet.

    Returns:
        ROC AUC and average precision from scikit-learn.

    Raises:
        EvaluationError: Shapes disagree or the ground truth lacks one of the two classes.
    """
    for index, scores in enumerate(snippet_scores):
        if np.ndim(scores) != 1:
            raise EvaluationError(f"snippet_scores[{index}] has shape {np.shape(scores)}; pass one score per snippet.")
    frames = np.concatenate([np.zeros(0), *(expand_to_frames(s, snippet_frames) for s in snippet_scores)])
    labels = np.asarray(frame_gt).ravel()
    if len(frames) != len(labels):
        raise EvaluationError(
            f"{len(snippet_scores)} videos give {len(frames)} frames ({snippet_frames} per snippet) but frame_gt has "
            f"{len(labels)}; build frame_gt from the same test list order and snippet counts."
        )
    if not np.isfinite(frames).all():
        raise EvaluationError("snippet_scores contain NaN or infinite values; check the model outputs.")
    if not np.isin(labels, (0, 1)).all() or len(np.unique(labels)) != 2:
        raise EvaluationError("frame_gt must hold 0/1 labels with both values present; AUC/AP are undefined otherwise.")
    return FrameMetrics(auc=float(roc_auc_score(labels, frames)), ap=float(average_precision_score(labels, frames)))


def video_class_confidence(frame_probs: np.ndarray, top_divisor: int = KAPPA_TOP_DIVISOR) -> np.ndarray:
    """κ: per class, the mean of the ``floor(F / top_divisor)`` largest of the ``F`` frame values ``[F, C] → [C]``."""
    count = frame_probs.shape[0] // top_divisor
    if count == 0:
        raise EvaluationError(f"a video needs at least {top_divisor} frames for detection, got {frame_probs.shape[0]}.")
    return (-np.sort(-frame_probs, axis=0))[:count].mean(axis=0)


def class_proposals(
    x: np.ndarray,
    kappa: float,
    threshold_ratio: float = THRESHOLD_RATIO,
    min_length: int = MIN_PROPOSAL_FRAMES,
    kappa_weight: float = KAPPA_WEIGHT,
) -> Segments:
    """Proposals of one class in one video: maximal runs of ``x > max − ratio·(max − min)`` (spec E.3 step 2).

    Args:
        x: Frame values of the class ``[F]``.
        kappa: The video-class confidence κ.
        threshold_ratio: Fraction of the value range below the maximum where the threshold sits.
        min_length: Shortest run kept, in frames.
        kappa_weight: Weight of κ in the score ``max(x[s:e]) + kappa_weight·κ``.

    Returns:
        The runs in start order.
    """
    if x.size == 0:
        return _no_segments()
    high, low = x.max(), x.min()
    threshold = float(high) - float(high - low) * threshold_ratio
    edges = np.diff(np.concatenate(([0], (x > threshold).astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    long_enough = ends - starts >= min_length
    starts, ends = starts[long_enough], ends[long_enough]
    if starts.size == 0:
        return _no_segments()
    # reduceat over [s0, e0, s1, e1, ...] reduces each [s, e); the appended value only keeps e = F a valid index.
    peaks = np.maximum.reduceat(np.append(x, low), np.stack([starts, ends], axis=1).ravel())[::2]
    return Segments(starts, ends, peaks.astype(np.float64) + kappa_weight * float(kappa))


def segment_iou(start: int, end: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """IoU of the frame set ``[start, end)`` with each of ``[starts_k, ends_k)`` (0 where both are empty)."""
    inter = np.clip(np.minimum(end, ends) - np.maximum(start, starts), 0, None)
    union = max(end - start, 0) + np.clip(ends - starts, 0, None) - inter
    return np.divide(inter, union, out=np.zeros(len(starts)), where=union > 0)


def temporal_nms(segments: Segments, iou_threshold: float = NMS_IOU) -> Segments:
    """Greedy 1-D NMS: keep the best, drop the rest whose IoU with it exceeds ``iou_threshold``, repeat.

    Returns:
        The kept segments, best score first (stable for ties).
    """
    order = np.argsort(-segments.scores, kind="stable")
    starts, ends, scores = segments.starts[order], segments.ends[order], segments.scores[order]
    remaining = np.arange(len(order))
    keep: list[int] = []
    while remaining.size:
        best, rest = remaining[0], remaining[1:]
        keep.append(best)
        remaining = rest[segment_iou(starts[best], ends[best], starts[rest], ends[rest]) <= iou_threshold]
    return Segments(starts[keep], ends[keep], scores[keep])


def video_proposals(frame_probs: np.ndarray, classes: Sequence[int] | None = None) -> list[Segments]:
    """Spec E.3 steps 1-3 for one video: κ, per-class proposals, NMS.

    Args:
        frame_probs: Class probabilities per frame ``[F, C]``.
        classes: Classes to propose for (default: all); the result follows this order.

    Returns:
        Per requested class, its proposals after NMS, best first.
    """
    kappa = video_class_confidence(frame_probs)
    frame_probs = frame_probs * (kappa > 0)  # as the official code, a class of confidence <= 0 is zeroed
    classes = range(frame_probs.shape[1]) if classes is None else classes
    return [temporal_nms(class_proposals(frame_probs[:, c], kappa[c])) for c in classes]


def video_events(
    class_probs: np.ndarray, snippet_frames: int = SNIPPET_FRAMES, include_normal: bool = False
) -> list[Event]:
    """Class-labelled events of one video (spec E.4): the detection proposals after NMS.

    Args:
        class_probs: Refined class probabilities per snippet ``[n, C]``, class 0 normal.
        snippet_frames: Frames per snippet.
        include_normal: Also propose for class 0.

    Returns:
        Events in frames, ordered by start frame then class index.
    """
    class_probs = _check_probs(class_probs, None, "class_probs")
    classes = list(range(0 if include_normal else 1, class_probs.shape[1]))
    proposals = video_proposals(expand_to_frames(class_probs, snippet_frames), classes)
    events = [
        Event(class_index=c, start=int(s), end=int(e), score=float(score))
        for c, segments in zip(classes, proposals, strict=True)
        for s, e, score in zip(*segments, strict=True)
    ]
    return sorted(events, key=lambda event: (event.start, event.class_index))


def average_precision(is_tp: np.ndarray, num_gt: int) -> float:
    """AP of a ranked list: ``Σ_k precision@k · TP_k / num_gt`` (0 when nothing matched)."""
    is_tp = np.asarray(is_tp, dtype=bool)
    if not is_tp.any():
        return 0.0
    precision = np.cumsum(is_tp) / np.arange(1, len(is_tp) + 1)
    return float(np.sum(precision * is_tp) / num_gt)


def match_proposals(
    videos: np.ndarray, segments: Segments, gt: dict[int, tuple[np.ndarray, np.ndarray]], iou_threshold: float
) -> np.ndarray:
    """Greedy matching in the given (score) order (spec E.3 step 7).

    Args:
        videos: Video index of each proposal ``[K]``.
        segments: The proposals ``[K]``, ranked.
        gt: Video index → (starts, ends) of its ground-truth intervals of this class.
        iou_threshold: Minimum IoU of a true positive.

    Returns:
        Boolean ``[K]``, True where a proposal took a still unmatched interval of its video (the one of highest
        IoU, the first on ties).
    """
    taken = {video: np.zeros(len(starts), dtype=bool) for video, (starts, _) in gt.items()}
    is_tp = np.zeros(len(videos), dtype=bool)
    for k, (video, start, end) in enumerate(zip(videos, segments.starts, segments.ends, strict=True)):
        if video not in gt:
            continue
        iou = np.where(taken[video], -1.0, segment_iou(start, end, *gt[video]))
        best = int(np.argmax(iou))
        if iou[best] >= iou_threshold:
            taken[video][best] = is_tp[k] = True
    return is_tp


def detection_map(
    class_probs: Sequence[np.ndarray],
    gt_segments: Sequence[Sequence[Sequence[int | str]]],
    gt_labels: Sequence[Sequence[str]],
    class_list: Sequence[str],
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    snippet_frames: int = SNIPPET_FRAMES,
) -> DetectionMAP:
    """Fine-grained detection mAP of the official code (``getDetectionMAP``, spec E.3).

    Args:
        class_probs: Per test video, refined class probabilities per snippet ``[n_i, C]``.
        gt_segments: Per video, its ``[start, end)`` frame intervals (str or int bounds, as in ``gt_segment*.npy``).
        gt_labels: Per video, one label per interval.
        class_list: Label string of each class index; labels outside it give no ground truth.
        iou_thresholds: The θ of the mAP.
        snippet_frames: Frames per snippet.

    Returns:
        mAP per θ, its mean and the per-class AP table.

    Raises:
        EvaluationError: The inputs disagree in length or in the number of classes.
    """
    if not len(class_probs) == len(gt_segments) == len(gt_labels):
        raise EvaluationError(
            f"got {len(class_probs)} predictions, {len(gt_segments)} segment lists and {len(gt_labels)} label lists; "
            "pass one of each per test video, in test-list order."
        )
    num_classes = len(class_list)
    pooled = _pooled_proposals(class_probs, num_classes, snippet_frames)
    gt = _ground_truth_by_class(gt_segments, gt_labels, class_list)
    missing = tuple(c for c in range(num_classes) if len(pooled[c][0]) == 0)
    num_gt = [sum(len(starts) for starts, _ in by_video.values()) for by_video in gt]
    map_at: dict[float, float] = {}
    class_ap: dict[float, tuple[float, ...]] = {}
    for theta in iou_thresholds:
        class_ap[theta] = tuple(
            average_precision(match_proposals(videos, segments, gt[c], theta), num_gt[c])
            for c, (videos, segments) in enumerate(pooled)
        )
        map_at[theta] = 0.0 if missing else 100.0 * float(np.mean(class_ap[theta]))
    average = float(np.mean(list(map_at.values()))) if map_at else 0.0
    return DetectionMAP(map_at=map_at, average=average, class_ap=class_ap, classes_without_proposals=missing)


def _pooled_proposals(
    class_probs: Sequence[np.ndarray], num_classes: int, snippet_frames: int
) -> list[tuple[np.ndarray, Segments]]:
    """Per class: (video index, proposal) of all videos, ranked by score (stable: video order, then NMS order)."""
    per_video = []
    for index, probs in enumerate(class_probs):
        probs = _check_probs(probs, num_classes, f"class_probs[{index}]")
        per_video.append(video_proposals(expand_to_frames(probs, snippet_frames)))
    pooled = []
    for c in range(num_classes):
        parts = [proposals[c] for proposals in per_video]
        videos = np.repeat(np.arange(len(parts), dtype=np.int64), [len(p.starts) for p in parts])
        segments = Segments(*(np.concatenate(column) for column in zip(_no_segments(), *parts, strict=True)))
        order = np.argsort(-segments.scores, kind="stable")
        pooled.append((videos[order], Segments(*(column[order] for column in segments))))
    return pooled


def _ground_truth_by_class(
    gt_segments: Sequence[Sequence[Sequence[int | str]]], gt_labels: Sequence[Sequence[str]], class_list: Sequence[str]
) -> list[dict[int, tuple[np.ndarray, np.ndarray]]]:
    index_of = {label: c for c, label in enumerate(class_list)}
    if len(index_of) != len(class_list):
        raise EvaluationError(f"class_list {list(class_list)} has duplicates; give each class one label.")
    lists: list[dict[int, list[tuple[int, int]]]] = [{} for _ in class_list]
    for video, (segments, labels) in enumerate(zip(gt_segments, gt_labels, strict=True)):
        if len(segments) != len(labels):
            raise EvaluationError(f"video {video}: {len(segments)} intervals but {len(labels)} labels.")
        for (start, end), label in zip(segments, labels, strict=True):
            if str(label) in index_of:
                lists[index_of[str(label)]].setdefault(video, []).append((int(start), int(end)))
    return [{video: _bounds(intervals) for video, intervals in by_video.items()} for by_video in lists]


def _bounds(intervals: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    array = np.array(intervals, dtype=np.int64).reshape(-1, 2)
    return array[:, 0], array[:, 1]


def _check_probs(probs: np.ndarray, num_classes: int | None, name: str) -> np.ndarray:
    probs = np.asarray(probs)
    if probs.ndim != 2 or (num_classes is not None and probs.shape[1] != num_classes):
        expected = f"[n, {num_classes}]" if num_classes is not None else "[n, C]"
        raise EvaluationError(f"{name} has shape {probs.shape}, expected {expected}; pass the refined probabilities P.")
    if not np.isfinite(probs).all():
        raise EvaluationError(f"{name} contains NaN or infinite values; check the model outputs.")
    return probs


def _no_segments() -> Segments:
    return Segments(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))
