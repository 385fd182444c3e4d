"""The official evaluation protocol (spec E.2-E.4) on cases whose results are worked out by hand in the tests."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from model.benchmark.groundtruth import build_frame_gt, load_gt_segments, parse_ucf_temporal_annotations, read_test_list
from model.benchmark.metrics import (
    Event,
    Segments,
    average_precision,
    class_proposals,
    detection_map,
    frame_metrics,
    match_proposals,
    segment_iou,
    temporal_nms,
    video_class_confidence,
    video_events,
    video_proposals,
)
from model.exceptions import EvaluationError

BENCHMARKS = Path(__file__).parents[4].parent / "shared" / "data" / "benchmarks"
UCF_CLASSES = [
    "Normal", "Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion",
    "Fighting", "RoadAccidents", "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism",
]  # fmt: skip


def _segments(starts: list[int], ends: list[int], scores: list[float]) -> Segments:
    return Segments(np.array(starts), np.array(ends), np.array(scores, dtype=np.float64))


def _as_tuples(segments: Segments) -> list[tuple[int, int, float]]:
    return [(int(s), int(e), pytest.approx(float(c))) for s, e, c in zip(*segments, strict=True)]


# --- frame AUC / AP --------------------------------------------------------------------------------------------


def test_frame_metrics_by_hand() -> None:
    # Video 0: snippets 0.1 (negative), 0.9 (positive). Video 1: one snippet 0.5, frames 8 positive, 8 negative.
    # Positives: 16 x 0.9, 8 x 0.5; negatives: 16 x 0.1, 8 x 0.5 (24 each, 576 pairs).
    # AUC = (16*24 + 8*16 + 0.5 * 8*8) / 576 = 544/576. AP: threshold 0.9 -> R 2/3, P 1; 0.5 -> R 1, P 24/32.
    frame_gt = np.r_[np.zeros(16), np.ones(16), np.ones(8), np.zeros(8)]
    metrics = frame_metrics([np.array([0.1, 0.9]), np.array([0.5])], frame_gt)
    assert metrics.auc == pytest.approx(544 / 576)
    assert metrics.ap == pytest.approx(2 / 3 * 1 + 1 / 3 * 0.75)


def test_frame_metrics_respects_snippet_frames() -> None:
    metrics = frame_metrics([np.array([0.2, 0.7])], np.array([0, 0, 1, 1]), snippet_frames=2)
    assert (metrics.auc, metrics.ap) == (1.0, 1.0)


def test_frame_metrics_errors() -> None:
    with pytest.raises(EvaluationError, match=r"give 32 frames \(16 per snippet\) but frame_gt has 31"):
        frame_metrics([np.array([0.1, 0.9])], np.r_[np.zeros(16), np.ones(15)])
    with pytest.raises(EvaluationError, match="one score per snippet"):
        frame_metrics([np.zeros((2, 1))], np.zeros(32))
    with pytest.raises(EvaluationError, match="both values"):
        frame_metrics([np.array([0.1, 0.9])], np.zeros(32))
    with pytest.raises(EvaluationError, match="NaN"):
        frame_metrics([np.array([0.1, np.nan])], np.r_[np.zeros(16), np.ones(16)])


# --- proposal building blocks ----------------------------------------------------------------------------------


def test_video_class_confidence_is_the_mean_of_the_top_sixteenth() -> None:
    probs = np.zeros((32, 2))
    probs[:, 0] = np.arange(32)  # top floor(32/16) = 2 values: 31, 30
    probs[5, 1] = 8.0  # top 2: 8, 0
    np.testing.assert_allclose(video_class_confidence(probs), [30.5, 4.0])
    with pytest.raises(EvaluationError, match="at least 16 frames"):
        video_class_confidence(np.ones((15, 2)))


def test_class_proposals_threshold_runs_and_scores() -> None:
    # h = 1.0 - 0.6 * (1.0 - 0.0) = 0.4; frames above: 2-3, 5 (too short), 7-8; 0.4 itself is not above.
    x = np.array([0.0, 0.2, 1.0, 0.9, 0.1, 0.8, 0.0, 0.7, 0.75, 0.4])
    assert _as_tuples(class_proposals(x, kappa=0.5)) == [(2, 4, 1.0 + 0.35), (7, 9, 0.75 + 0.35)]
    assert _as_tuples(class_proposals(x, kappa=0.5, min_length=1))[1] == (5, 6, 0.8 + 0.35)


def test_class_proposals_threshold_uses_the_range_and_runs_reach_the_end() -> None:
    # h = 1.5 - 0.6 * (1.5 - 0.5) = 0.9
    x = np.array([0.5, 1.5, 1.5, 0.5, 1.0, 1.1])
    assert _as_tuples(class_proposals(x, kappa=0.0)) == [(1, 3, 1.5), (4, 6, 1.1)]


def test_class_proposals_none_for_constant_or_empty_input() -> None:
    assert len(class_proposals(np.full(40, 0.3), kappa=0.3).starts) == 0
    assert len(class_proposals(np.zeros(0), kappa=0.0).starts) == 0


def test_segment_iou_on_integer_frame_sets() -> None:
    iou = segment_iou(0, 10, np.array([5, 10, 0, 3, 2]), np.array([15, 20, 10, 3, 4]))
    np.testing.assert_allclose(iou, [5 / 15, 0.0, 1.0, 0.0, 2 / 10])


def test_temporal_nms_by_hand() -> None:
    # Ranked: (0,6) .95, (0,10) .9, (1,10) .8, (5,15) .7. Keep (0,6): IoU (0,10) = 0.6 is not above 0.6, stays.
    # Keep (0,10): (1,10) IoU 0.9 dropped, (5,15) IoU 1/3 stays. Keep (5,15).
    kept = temporal_nms(_segments([0, 1, 5, 0], [10, 10, 15, 6], [0.9, 0.8, 0.7, 0.95]))
    assert _as_tuples(kept) == [(0, 6, 0.95), (0, 10, 0.9), (5, 15, 0.7)]


def test_temporal_nms_keeps_input_order_on_ties() -> None:
    kept = temporal_nms(_segments([20, 0, 40], [30, 10, 50], [0.5, 0.5, 0.6]))
    assert [int(s) for s in kept.starts] == [40, 20, 0]


def test_average_precision_by_hand() -> None:
    # TP, FP, TP with 3 ground-truth intervals: (1/1 + 2/3) / 3.
    assert average_precision(np.array([True, False, True]), 3) == pytest.approx(5 / 9)
    assert average_precision(np.array([True, True]), 4) == pytest.approx(0.5)
    assert average_precision(np.array([False, False]), 2) == 0.0
    assert average_precision(np.zeros(0, dtype=bool), 0) == 0.0


def test_match_proposals_is_greedy_and_takes_the_best_interval() -> None:
    gt = {0: (np.array([0, 0, 200]), np.array([50, 100, 300]))}
    ranked = _segments([0, 0, 10, 200, 0], [90, 50, 100, 260, 100], [5, 4, 3, 2, 1])
    videos = np.array([0, 0, 0, 0, 1])
    # (0,90): IoU 50/90 with (0,50), 0.9 with (0,100) -> takes (0,100). (0,50): takes (0,50) with IoU 1.
    # (10,100): both overlapping intervals are taken -> FP. (200,260): 0.6 -> TP. Video 1 has no ground truth -> FP.
    np.testing.assert_array_equal(match_proposals(videos, ranked, gt, 0.6), [True, True, False, True, False])
    # Had (0,90) taken the first overlapping (0,50), (0,50) would have been left with IoU 0.5 < 0.6: an FP.
    # At 0.7, (200,260) misses.
    np.testing.assert_array_equal(match_proposals(videos, ranked, gt, 0.7), [True, True, False, False, False])


# --- detection mAP ---------------------------------------------------------------------------------------------


def _two_class_benchmark() -> tuple[list[np.ndarray], list[list[list[str | int]]], list[list[str]]]:
    """Three anomalous videos and one normal video, 4 snippets each; columns (normal, fight)."""
    fight = [[0, 1, 1, 0], [0.8, 0.8, 0, 0], [0, 0, 0.6, 0.6], [0.1, 0, 0, 0]]
    normal = [[1, 0, 0, 1], [0.2, 0.2, 1, 1], [1, 1, 0.4, 0.4], [0.9, 1, 1, 1]]
    probs = [np.stack([n, f], axis=1) for n, f in zip(normal, fight, strict=True)]
    segments: list[list[list[str | int]]] = [[["16", "48"], ["48", "64"]], [], [["32", "64"]], [[0, 64]]]
    labels = [["Fight", "Fight"], [], ["Fight"], ["A"]]
    return probs, segments, labels


def test_detection_map_by_hand_ucf_style_normal_class_has_no_ground_truth() -> None:
    # Fight proposals ranked: v0 (16,48) 1+0.7 -> TP; v1 (0,32) 0.8+0.56 -> FP; v2 (32,64) 0.6+0.42 -> TP;
    # v3 (0,16) 0.1+0.07 -> FP. 3 Fight intervals: AP = (1 + 2/3) / 3 = 5/9 at every θ.
    # 'A' is not in the class list: class 0 has no ground truth, AP 0, and still counts in the mean.
    probs, segments, labels = _two_class_benchmark()
    result = detection_map(probs, segments, labels, ["Normal", "Fight"])
    assert result.classes_without_proposals == ()
    for theta in (0.1, 0.2, 0.3, 0.4, 0.5):
        assert result.class_ap[theta] == pytest.approx((0.0, 5 / 9))
        assert result.map_at[theta] == pytest.approx(100 * (5 / 9) / 2)
    assert result.average == pytest.approx(100 * (5 / 9) / 2)


def test_detection_map_by_hand_xd_style_normal_class_is_evaluated() -> None:
    # Same data, but 'A' is class 0. Normal proposals all score 1 + 0.7 * 1 = 1.7; the stable order is
    # v0 (0,16), v0 (48,64), v1 (32,64), v2 (0,32), v3 (16,64); only the last overlaps v3's [0,64) (IoU 0.75).
    # AP_normal = precision@5 = 1/5.
    probs, segments, labels = _two_class_benchmark()
    result = detection_map(probs, segments, labels, ["A", "Fight"], iou_thresholds=(0.5,))
    assert result.class_ap[0.5] == pytest.approx((1 / 5, 5 / 9))
    assert result.map_at == {0.5: pytest.approx(100 * (1 / 5 + 5 / 9) / 2)}


def test_detection_map_is_zero_when_a_class_has_no_proposal() -> None:
    probs, segments, labels = _two_class_benchmark()
    probs = [np.concatenate([p, np.zeros((4, 1))], axis=1) for p in probs]  # "Riot" is never proposed
    result = detection_map(probs, segments, labels, ["Normal", "Fight", "Riot"])
    assert result.classes_without_proposals == (2,)
    assert result.map_at == dict.fromkeys((0.1, 0.2, 0.3, 0.4, 0.5), 0.0) and result.average == 0.0
    assert result.class_ap[0.3] == pytest.approx((0.0, 5 / 9, 0.0))


def test_detection_map_iou_threshold_decides_matches() -> None:
    # One video, proposal (16,48); ground truth (16,80): IoU 0.5 -> TP at θ <= 0.5 only.
    probs = [np.array([[1, 0], [0, 1], [0, 1], [1, 0], [1, 0], [1, 0]], dtype=np.float32)]
    result = detection_map(probs, [[[16, 80]]], [["Fight"]], ["Normal", "Fight"], iou_thresholds=(0.5, 0.6))
    assert [result.class_ap[t][1] for t in (0.5, 0.6)] == [1.0, 0.0]


def test_detection_map_errors() -> None:
    probs, segments, labels = _two_class_benchmark()
    with pytest.raises(EvaluationError, match="one of each per test video"):
        detection_map(probs, segments[:3], labels, ["Normal", "Fight"])
    with pytest.raises(EvaluationError, match=r"class_probs\[0\] has shape \(4, 2\), expected \[n, 3\]"):
        detection_map(probs, segments, labels, ["Normal", "Fight", "Riot"])
    with pytest.raises(EvaluationError, match="duplicates"):
        detection_map(probs, segments, labels, ["Fight", "Fight"])
    probs[1][0, 1] = np.nan
    with pytest.raises(EvaluationError, match=r"class_probs\[1\] contains NaN"):
        detection_map(probs, segments, labels, ["Normal", "Fight"])


def test_perfect_predictor_synthetic() -> None:
    # Snippet-aligned intervals: frame AUC/AP are 1 and every abnormal class has AP 1 (class 0 has none: 2/3).
    classes = ["Normal", "Fight", "Riot"]
    segments = [[[32, 96]], [[0, 48], [112, 160]], [[0, 160]]]
    labels = [["Fight"], ["Riot", "Fight"], ["A"]]
    probs, scores = [], []
    for video_segments, video_labels in zip(segments, labels, strict=True):
        p = np.zeros((10, 3), dtype=np.float32)
        p[:, 0] = 1
        for (start, end), label in zip(video_segments, video_labels, strict=True):
            if label != "A":
                p[start // 16 : end // 16] = np.eye(3)[classes.index(label)]
        probs.append(p)
        scores.append(1 - p[:, 0])
    intervals = {"v0": [(32, 96)], "v1": [(0, 48), (112, 160)], "v2": []}
    metrics = frame_metrics(scores, build_frame_gt(["v0", "v1", "v2"], [10, 10, 10], intervals))
    assert (metrics.auc, metrics.ap) == (1.0, 1.0)
    result = detection_map(probs, segments, labels, classes)
    assert result.class_ap[0.5] == (0.0, 1.0, 1.0)
    assert result.average == pytest.approx(200 / 3)


# --- events (spec E.4) -----------------------------------------------------------------------------------------


def test_video_events_by_hand() -> None:
    # Class 1: run (16,48), κ 1 -> 1.7. Class 2: h = 0.9 - 0.6*0.9 = 0.36 -> (0,16) and (48,64), κ = 0.9.
    probs = np.array([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.1, 0.0, 0.9]])
    events = video_events(probs)
    assert events == [
        Event(2, 0, 16, pytest.approx(0.5 + 0.63)),
        Event(1, 16, 48, pytest.approx(1.7)),
        Event(2, 48, 64, pytest.approx(0.9 + 0.63)),
    ]
    with_normal = video_events(probs, include_normal=True)
    assert with_normal[0] == Event(0, 0, 16, pytest.approx(0.5 + 0.7 * 0.5))  # h = 0.2: only the first snippet
    assert len(with_normal) == 4
    assert video_proposals(np.repeat(probs, 16, axis=0), [1])[0].starts.tolist() == [16]


def test_video_events_need_enough_frames() -> None:
    with pytest.raises(EvaluationError, match="at least 16 frames"):
        video_events(np.ones((4, 3)), snippet_frames=1)
    with pytest.raises(EvaluationError, match="expected"):
        video_events(np.ones(4))


# --- consistency on the real UCF-Crime ground truth ------------------------------------------------------------


def test_perfect_predictor_on_the_real_ucf_ground_truth() -> None:
    if not (BENCHMARKS / "gt_segment_ucf.npy").is_file():
        pytest.skip(f"benchmark annotation files not found under {BENCHMARKS} (shared data not mounted)")
    gt = load_gt_segments(BENCHMARKS / "gt_segment_ucf.npy", BENCHMARKS / "gt_label_ucf.npy")
    videos = read_test_list(BENCHMARKS / "ucf_CLIP_rgbtest.csv")
    counts = [max(end for _, end in segments) // 16 + 2 for segments in gt.segments]
    probs = []
    for count, segments, labels in zip(counts, gt.segments, gt.labels, strict=True):
        p = np.zeros((count, len(UCF_CLASSES)), dtype=np.float32)
        p[:, 0] = 1
        for (start, end), label in zip(segments, labels, strict=True):
            if label != "A":  # snippets overlapping the interval
                p[start // 16 : math.ceil(end / 16)] = np.eye(len(UCF_CLASSES))[UCF_CLASSES.index(label)]
        probs.append(p)
    annotations = parse_ucf_temporal_annotations(BENCHMARKS / "Temporal_Anomaly_Annotation.txt")
    frame_gt = build_frame_gt([video.name for video in videos], counts, annotations)
    metrics = frame_metrics([1 - p[:, 0] for p in probs], frame_gt)
    assert metrics.auc > 0.99  # only the rounding of intervals to snippets costs anything
    result = detection_map(probs, gt.segments, gt.labels, UCF_CLASSES)
    # Every abnormal class is found perfectly; Normal has no ground truth and caps the mAP at 13/14.
    assert result.class_ap[0.5][1:] == (1.0,) * 13
    assert result.average == pytest.approx(100 * 13 / 14)
