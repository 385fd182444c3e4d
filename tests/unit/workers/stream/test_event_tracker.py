"""EventTracker on synthetic score sequences: opening, closing, hysteresis, minimum duration, merge gap, class, peak;
and agreement with the offline rule (workers.event_finder.find_events) when there is no hysteresis."""

from __future__ import annotations

import numpy as np
import pytest

from workers.event_finder import find_events
from workers.stream.event_tracker import EventTracker, EventUpdate
from workers.stream.online import SnippetScore

CLASSES = ("normal", "fight", "fire")
SNIPPET_S = 0.5


def snippets(scores: list[float], probs: list[tuple[float, ...]] | None = None) -> list[SnippetScore]:
    """Snippets of 0.5 s with the given scores; class probs favour 'fight' unless given."""
    out = []
    for i, score in enumerate(scores):
        p = probs[i] if probs is not None else (1 - score, score * 0.7, score * 0.3)
        out.append(SnippetScore(index=i, start_s=i * SNIPPET_S, end_s=(i + 1) * SNIPPET_S, score=score,
                                class_probs=p, scored_at=1000.0 + i))
    return out


def run(tracker: EventTracker, scores: list[SnippetScore]) -> list[tuple[int, EventUpdate]]:
    """Every update with the index of the snippet that produced it."""
    return [(s.index, u) for s in scores for u in tracker.update(s)]


def tracker(**kw: float) -> EventTracker:
    args = {"threshold": 0.5, "hysteresis": 0.0, "min_event_s": 0.0, "merge_gap_s": 0.0, **kw}
    return EventTracker(class_names=CLASSES, **args)


def test_an_event_opens_at_the_first_high_snippet_and_closes_at_the_first_low_one() -> None:
    updates = run(tracker(), snippets([0.1, 0.2, 0.9, 0.8, 0.7, 0.1, 0.1]))
    assert [(i, u.kind) for i, u in updates] == [(2, "open"), (5, "close")]
    opened, closed = updates[0][1].event, updates[1][1].event
    assert opened.id == closed.id and opened.end_s is None and opened.is_open
    assert (closed.start_s, closed.end_s) == (1.0, 2.5)
    assert closed.peak_score == pytest.approx(0.9) and closed.mean_score == pytest.approx(0.8)
    assert closed.class_name == "fight" and closed.first_index == 2 and closed.last_index == 4
    assert opened.opened_at == 1002.0 and closed.closed_at == 1005.0 and updates[1][1].reason == "scores fell"


def test_nothing_above_the_threshold_gives_no_event() -> None:
    assert run(tracker(), snippets([0.1, 0.5, 0.49, 0.3])) == []  # strictly above, as offline


def test_minimum_duration_delays_the_opening_and_drops_short_runs() -> None:
    t = tracker(min_event_s=1.5)
    updates = run(t, snippets([0.9, 0.9, 0.1, 0.0, 0.9, 0.9, 0.9, 0.9, 0.1]))
    # the first run lasts 1.0 s: never reported; the second opens once it spans 1.5 s (its third snippet)
    assert [(i, u.kind) for i, u in updates] == [(6, "open"), (8, "close")]
    assert updates[0][1].event.start_s == 2.0 and updates[1][1].event.end_s == 4.0


def test_dips_shorter_than_the_merge_gap_are_bridged() -> None:
    t = tracker(merge_gap_s=1.0)
    updates = run(t, snippets([0.9, 0.2, 0.9, 0.2, 0.2, 0.9, 0.1, 0.1, 0.1]))
    # dip of 0.5 s bridged; a dip of 1.0 s closes (the next snippet would start 1.0 s after the last high one)
    assert [(i, u.kind) for i, u in updates] == [(0, "open"), (4, "close"), (5, "open"), (7, "close")]
    first = updates[1][1].event
    assert (first.start_s, first.end_s, first.last_index) == (0.0, 1.5, 2)
    assert first.mean_score == pytest.approx((0.9 + 0.2 + 0.9) / 3)  # the bridged dip counts in the mean


def test_hysteresis_keeps_an_event_open_while_scores_stay_above_the_lower_level() -> None:
    scores = [0.1, 0.6, 0.45, 0.42, 0.55, 0.35, 0.1]
    without = run(tracker(), snippets(scores))
    assert [(i, u.kind) for i, u in without] == [(1, "open"), (2, "close"), (4, "open"), (5, "close")]
    with_h = run(tracker(hysteresis=0.1), snippets(scores))
    assert [(i, u.kind) for i, u in with_h] == [(1, "open"), (5, "close")]
    assert with_h[1][1].event.end_s == 2.5
    # hysteresis does not start events: 0.45 alone is below the threshold
    assert run(tracker(hysteresis=0.1), snippets([0.45, 0.45, 0.1])) == []


def test_the_class_is_the_best_abnormal_class_on_average_and_normal_never_wins() -> None:
    probs: list[tuple[float, ...]] = [(0.05, 0.9, 0.05), (0.05, 0.1, 0.85), (0.05, 0.1, 0.85), (0.9, 0.05, 0.05)]
    updates = run(tracker(), snippets([0.9, 0.9, 0.9, 0.1], probs))
    assert updates[0][1].event.class_name == "fight"  # all it has seen at opening
    closed = updates[1][1].event
    assert closed.class_name == "fire" and closed.class_prob == pytest.approx((0.05 + 0.85 + 0.85) / 3)


def test_finish_closes_an_open_event_with_its_reason_and_forgets_a_candidate() -> None:
    t = tracker(min_event_s=2.0)
    assert run(t, snippets([0.9, 0.9])) == []
    assert t.finish("stopped") == [] and t.open_event is None
    t = tracker()
    run(t, snippets([0.9, 0.95]))
    assert t.open_event is not None and t.open_event.peak_score == pytest.approx(0.95)
    (update,) = t.finish("source lost", now=5.0)
    assert update.kind == "close" and update.reason == "source lost" and update.event.end_s == 1.0
    assert update.event.closed_at == 5.0 and t.open_event is None and t.finish() == []


def test_dropped_snippets_count_as_time_not_as_snippets() -> None:
    t = tracker(merge_gap_s=1.0)
    high = snippets([0.9] * 10)
    low = SnippetScore(index=9, start_s=4.5, end_s=5.0, score=0.1, class_probs=(0.9, 0.05, 0.05))
    # snippets 1..8 dropped: the low snippet at 4.5 s comes 4 s after the last high one ended, so it closes
    updates = [u for s in (high[0], low) for u in t.update(s)]
    assert [u.kind for u in updates] == ["open", "close"] and updates[1].event.end_s == 0.5


@pytest.mark.parametrize("seed", range(20))
def test_without_hysteresis_the_closed_events_are_the_offline_events(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 200
    raw = np.clip(np.convolve(rng.uniform(0, 1, n), np.ones(5) / 5, mode="same") + rng.normal(0, 0.1, n), 0, 1)
    probs = rng.dirichlet(np.ones(3), n)
    start = np.arange(n) * SNIPPET_S
    gap, minimum = float(rng.choice([0.0, 0.5, 1.0, 2.0])), float(rng.choice([0.0, 0.5, 1.5]))
    offline = find_events(raw, probs, start, start + SNIPPET_S, threshold=0.5, merge_gap_s=gap, min_event_s=minimum)
    t = tracker(merge_gap_s=gap, min_event_s=minimum)
    live = [u for s in snippets(raw.tolist(), [tuple(p) for p in probs]) for u in t.update(s)] + t.finish()
    closed = [u.event for u in live if u.kind == "close"]
    assert [t for e in closed for t in (e.start_s, e.end_s)] == pytest.approx(
        [t for e in offline for t in (e.start_s, e.end_s)])
    assert [e.class_name for e in closed] == [CLASSES[e.class_index] for e in offline]
    assert [e.peak_score for e in closed] == pytest.approx([e.peak_score for e in offline])
    assert [e.mean_score for e in closed] == pytest.approx([e.mean_score for e in offline])
    assert sum(u.kind == "open" for u in live) == len(closed)


def test_bad_settings_and_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="hysteresis"):
        tracker(hysteresis=0.6)
    with pytest.raises(ValueError, match="merge_gap_s"):
        tracker(merge_gap_s=-1)
    with pytest.raises(ValueError, match="normal and at least one"):
        EventTracker(0.5, 0.0, 0.0, 0.0, ("normal",))
    with pytest.raises(ValueError, match="2 class probabilities for 3 classes"):
        tracker().update(SnippetScore(0, 0.0, 0.5, 0.9, (0.1, 0.9)))


def test_events_carry_their_media_start_and_end_as_unix_times_on_the_stream_clock() -> None:
    origin = 1_700_000_000.0  # Unix time of stream time 0
    scores = [SnippetScore(index=i, start_s=s.start_s, end_s=s.end_s, score=s.score, class_probs=s.class_probs,
                           scored_at=s.scored_at, start_at=origin + s.start_s)
              for i, s in enumerate(snippets([0.1, 0.9, 0.8, 0.9, 0.1]))]
    (_, opened), (_, closed) = run(tracker(), scores)
    assert opened.event.start_at == origin + 0.5 and opened.event.end_at is None
    assert closed.event.start_at == origin + 0.5 and closed.event.end_at == origin + 2.0
    assert closed.event.to_dict()["start_at"] == origin + 0.5 and closed.event.to_dict()["end_at"] == origin + 2.0
    unknown = run(tracker(), snippets([0.9, 0.1]))  # no clock origin (a score without start_at)
    assert unknown[1][1].event.to_dict()["start_at"] is None and unknown[1][1].event.end_at is None


def test_retune_puts_a_new_threshold_in_force_without_losing_the_run() -> None:
    t = tracker(threshold=0.5)
    updates = run(t, snippets([0.9, 0.9]))
    t.retune(0.95, 0.0)
    assert t.open_event is not None  # the event open stays open
    assert [u.kind for s in snippets([0.1, 0.6, 0.96]) for u in t.update(s)] == ["close", "open"]
    with pytest.raises(ValueError):
        t.retune(1.5, 0.0)
    assert t.threshold == 0.95 and updates


def test_the_calibration_counts_alarms_as_the_tracker_opens_them() -> None:
    """vad.alerts.count_alarms is this tracker's rule (no hysteresis)."""
    from vad.alerts import count_alarms

    rng = np.random.default_rng(5)
    s = np.clip(np.convolve(rng.random(3000), np.ones(4) / 4, mode="same"), 0, 1).tolist()
    st = [k * 0.32 for k in range(len(s))]
    en = [a + 0.32 for a in st]
    for threshold, min_event_s in ((0.75, 0.0), (0.7, 0.64)):
        t = EventTracker(threshold=threshold, hysteresis=0.0, min_event_s=min_event_s, merge_gap_s=0.5,
                         class_names=("normal", "x"))
        opened = [k for k, (v, a, b) in enumerate(zip(s, st, en, strict=True))
                  for u in t.update(SnippetScore(k, a, b, v, (1 - v, v))) if u.kind == "open"]
        assert count_alarms(s, st, en, threshold, min_event_s, 0.5) == len(opened) > 5
