"""bench/alerts.py's latency-aware AP on frame scores whose value is worked out by hand in each test.

An anomaly of ``L`` frames first crossed ``d`` frames after its onset is credited ``L - d`` recalled frames at that
threshold; precision is the plain frame precision. The AP the LaAP is compared with is scikit-learn's, through
:func:`model.benchmark.metrics.frame_metrics` (one frame per "snippet").
"""

from __future__ import annotations

import numpy as np
import pytest

from model.benchmark.metrics import frame_metrics


def laap(scores: list[float], truth: list[int]) -> float:
    from bench.alerts import latency_aware_ap

    return latency_aware_ap(np.array(scores), np.array(truth, np.int8))


def ap(scores: list[float], truth: list[int]) -> float:
    return frame_metrics([np.array(scores)], np.array(truth), snippet_frames=1).ap


def test_a_detector_that_fires_from_each_anomalys_first_frame_scores_its_ap() -> None:
    truth = [0, 1, 1, 0, 0, 1, 1, 1, 0, 0]
    # a false alarm above both anomalies, another between them; each anomaly scored from its first frame on
    scores = [0.9, 0.8, 0.8, 0.0, 0.0, 0.5, 0.5, 0.5, 0.0, 0.6]
    # by hand: above 0.8 the false alarm alone (recall 0); above 0.6, 2 of 3 frames right and 2 of 5 recalled;
    # above 0.5 nothing new is recalled; above 0, 5 of 7 right and all recalled
    expected = 2 / 5 * 2 / 3 + 3 / 5 * 5 / 7
    assert ap(scores, truth) == pytest.approx(expected)
    assert laap(scores, truth) == pytest.approx(expected)


def test_a_late_detection_scores_less_than_an_early_one_of_the_same_ap() -> None:
    truth = [0, 0, 1, 1, 1, 1, 0, 0]
    early = [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]  # the anomaly's first half
    late = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]  # its second half
    assert ap(early, truth) == pytest.approx(ap(late, truth)) == pytest.approx(0.75)
    # early: crossed at its onset, all 4 frames recalled at precision 1; late: crossed 2 frames in, 2 of 4 recalled
    assert laap(early, truth) == pytest.approx(1.0)
    assert laap(late, truth) == pytest.approx(0.5)


def test_two_anomalies_crossed_at_several_thresholds_give_the_hand_computed_value() -> None:
    truth = [0, 1, 1, 1, 1, 0, 0, 1, 1, 0]  # anomaly A: frames 1-4, anomaly B: frames 7-8; 6 positive frames
    scores = [0.2, 0.1, 0.6, 0.9, 0.3, 0.7, 0.0, 0.0, 0.4, 0.0]
    # A from / B from: the anomaly's first frame above the threshold (its recalled frames)
    # threshold range   frames above      precision  A from  B from  recall  AP term
    # [0.7, 0.9)        3                 1          3 (2)   -       2/6     2/6 * 1
    # [0.6, 0.7)        3 5               1/2        3 (2)   -       2/6     0
    # [0.4, 0.6)        2 3 5             2/3        2 (3)   -       3/6     1/6 * 2/3
    # [0.3, 0.4)        2 3 5 8           3/4        2 (3)   8 (1)   4/6     1/6 * 3/4
    # [0.2, 0.3)        2 3 4 5 8         4/5        2 (3)   8 (1)   4/6     0
    # [0.1, 0.2)        0 2 3 4 5 8       4/6        2 (3)   8 (1)   4/6     0
    # [0.0, 0.1)        0 1 2 3 4 5 8     5/7        1 (4)   8 (1)   5/6     1/6 * 5/7
    expected = 2 / 6 + 1 / 6 * 2 / 3 + 1 / 6 * 3 / 4 + 1 / 6 * 5 / 7  # = 347/504
    assert laap(scores, truth) == pytest.approx(expected)
    assert expected == pytest.approx(347 / 504)


def test_footage_without_anomalies_or_without_normal_frames_has_no_laap() -> None:
    assert np.isnan(laap([0.1, 0.9, 0.3], [0, 0, 0]))
    assert np.isnan(laap([0.1, 0.9, 0.3], [1, 1, 1]))
