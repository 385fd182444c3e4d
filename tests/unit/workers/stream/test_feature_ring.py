"""The features kept for a closing event: its snippets, the context before it, and where the window starts."""

from __future__ import annotations

import numpy as np

from workers.stream.event_tracker import LiveEvent
from workers.stream.feature_ring import FeatureRing


def event(first: int, last: int) -> LiveEvent:
    return LiveEvent(id="e", class_name="c", class_prob=0.5, start_s=0.0, end_s=1.0, peak_score=0.9, mean_score=0.8,
                     first_index=first, last_index=last)


def test_the_window_holds_the_context_the_event_and_what_followed() -> None:
    ring = FeatureRing(capacity=50, context=4)
    for i in range(30):
        ring.push(i, np.full(3, i, np.float32))
    found = ring.around(event(10, 20))
    assert found is not None
    features, start = found
    assert start == 6 and features.dtype == np.float32 and features[:, 0].tolist() == list(range(6, 30))


def test_a_short_past_gives_less_context_and_a_lost_event_none() -> None:
    ring = FeatureRing(capacity=8, context=4)
    for i in range(2, 12):
        ring.push(i, np.zeros(3, np.float32))
    found = ring.around(event(5, 9))
    assert found is not None and found[1] == 4 and len(found[0]) == 8  # the ring keeps 4..11
    assert ring.around(event(0, 2)) is None  # its snippets left the ring
    ring.reset()
    assert ring.around(event(5, 9)) is None
