"""Events from hand-made score arrays: runs, strict threshold, gap merging, minimum length, class, peak and mean."""

from __future__ import annotations

import numpy as np
import pytest

from workers.event_finder import find_events, merge_runs, threshold_runs


def timeline(scores: list[float], seconds: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(scores)
    start = np.arange(n) * seconds
    return np.asarray(scores), start, start + seconds


def probs(n: int, favourite: dict[int, int] | None = None, classes: int = 4) -> np.ndarray:
    """Uniform abnormal probabilities, except snippet → class given in ``favourite`` gets 0.4."""
    p = np.full((n, classes), 0.1)
    p[:, 0] = 1 - 0.1 * (classes - 1)
    for snippet, cls in (favourite or {}).items():
        p[snippet, cls] = 0.4
    return p


def test_runs_are_maximal_and_the_threshold_is_strict() -> None:
    assert threshold_runs(np.array([0.6, 0.7, 0.5, 0.2, 0.9]), 0.5) == [(0, 1), (4, 4)]
    assert threshold_runs(np.array([0.5, 0.5]), 0.5) == []
    assert threshold_runs(np.array([]), 0.5) == []
    assert threshold_runs(np.ones(3), 0.5) == [(0, 2)]


def test_no_event_below_the_threshold() -> None:
    scores, start, end = timeline([0.1, 0.4, 0.5, 0.2])
    assert find_events(scores, probs(4), start, end, threshold=0.5) == []


def test_one_event_with_peak_mean_and_class() -> None:
    scores, start, end = timeline([0.1, 0.6, 0.9, 0.7, 0.2])
    (event,) = find_events(scores, probs(5, {1: 2, 2: 2, 3: 3}), start, end, threshold=0.5)
    assert (event.first, event.last, event.start_s, event.end_s) == (1, 3, 0.5, 2.0)
    assert event.peak_score == pytest.approx(0.9) and event.mean_score == pytest.approx(0.7333333)
    # class 2 is favoured on two of the three snippets: mean (0.4 + 0.4 + 0.1) / 3
    assert event.class_index == 2 and event.class_prob == pytest.approx(0.3)
    assert event.duration_s == pytest.approx(1.5)


def test_events_at_both_ends_and_single_snippets() -> None:
    scores, start, end = timeline([0.8, 0.1, 0.1, 0.1, 0.95])
    events = find_events(scores, probs(5), start, end, threshold=0.5, merge_gap_s=0.0)
    assert [(e.first, e.last) for e in events] == [(0, 0), (4, 4)]
    assert events[1].end_s == 2.5 and events[0].class_index == 1  # ties go to the first abnormal class


def test_gaps_shorter_than_merge_gap_are_bridged() -> None:
    scores, start, end = timeline([0.9, 0.2, 0.8, 0.1, 0.1, 0.7])  # gaps: one snippet (0.5 s), then 1.0 s
    assert merge_runs([(0, 0), (2, 2), (5, 5)], start, end, 0.6) == [(0, 2), (5, 5)]
    events = find_events(scores, probs(6), start, end, threshold=0.5, merge_gap_s=0.6)
    assert [(e.first, e.last) for e in events] == [(0, 2), (5, 5)]
    assert events[0].mean_score == pytest.approx((0.9 + 0.2 + 0.8) / 3), "the bridged gap counts in the mean"
    assert len(find_events(scores, probs(6), start, end, threshold=0.5, merge_gap_s=0.5)) == 3, "strictly shorter"
    assert len(find_events(scores, probs(6), start, end, threshold=0.5, merge_gap_s=1.01)) == 1


def test_short_events_are_dropped_after_merging() -> None:
    scores, start, end = timeline([0.9, 0.2, 0.8, 0.1, 0.1, 0.7])
    events = find_events(scores, probs(6), start, end, threshold=0.5, merge_gap_s=0.6, min_event_s=1.0)
    assert [(e.first, e.last) for e in events] == [(0, 2)]


def test_variable_snippet_lengths_use_the_given_times() -> None:
    scores = np.array([0.9, 0.1, 0.9])
    start, end = np.array([0.0, 0.64, 0.70]), np.array([0.64, 0.70, 1.34])  # a 0.06 s middle snippet (VFR)
    events = find_events(scores, probs(3), start, end, threshold=0.5, merge_gap_s=0.1)
    assert [(e.start_s, e.end_s) for e in events] == [(0.0, 1.34)]


def test_shape_errors() -> None:
    scores, start, end = timeline([0.9, 0.1])
    with pytest.raises(ValueError, match="class_probs"):
        find_events(scores, probs(3), start, end)
    with pytest.raises(ValueError, match="abnormal class"):
        find_events(scores, np.ones((2, 1)), start, end)
