"""Events of one video from its snippet scores: threshold runs, gap merging, minimum length, class, peak, mean.

Pure numpy. This is the simple class-agnostic rule of spec E.4 (a fixed threshold on ``σ(logits1)``),
chosen for a service because its events mean the same thing in every video; the official detection
proposals (relative thresholds per class, NMS) are :func:`model.benchmark.metrics.video_events`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EventSpan:
    """One detected event: snippets ``first..last`` (inclusive) and what they say.

    Attributes:
        first: Index of the first snippet.
        last: Index of the last snippet.
        start_s: Start time of the first snippet.
        end_s: End time of the last snippet.
        peak_score: Highest anomaly score in the span.
        mean_score: Mean anomaly score over the span (merged gaps included).
        class_index: Abnormal class (``>= 1``) with the highest mean probability over the span.
        class_prob: That mean probability.
    """

    first: int
    last: int
    start_s: float
    end_s: float
    peak_score: float
    mean_score: float
    class_index: int
    class_prob: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def threshold_runs(scores: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Maximal runs ``(first, last)`` (inclusive) of consecutive snippets with ``score > threshold``."""
    above = np.concatenate([[False], np.asarray(scores) > threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def merge_runs(runs: list[tuple[int, int]], start_s: np.ndarray, end_s: np.ndarray, gap_s: float
               ) -> list[tuple[int, int]]:
    """Join runs whose gap (next start minus previous end, in seconds) is shorter than ``gap_s``."""
    merged: list[tuple[int, int]] = []
    for first, last in runs:
        if merged and start_s[first] - end_s[merged[-1][1]] < gap_s:
            merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


def find_events(
    scores: np.ndarray,
    class_probs: np.ndarray,
    start_s: np.ndarray,
    end_s: np.ndarray,
    *,
    threshold: float = 0.5,
    merge_gap_s: float = 0.0,
    min_event_s: float = 0.0,
) -> list[EventSpan]:
    """Events of one video, in time order.

    Args:
        scores: Anomaly score per snippet ``[n]``.
        class_probs: Class distribution per snippet ``[n, C]``, class 0 normal.
        start_s: Start time of each snippet ``[n]``.
        end_s: End time of each snippet ``[n]``.
        threshold: A snippet is anomalous when its score is strictly above this.
        merge_gap_s: Runs separated by less than this many seconds become one event.
        min_event_s: Events (after merging) shorter than this are dropped.

    Returns:
        The events; the class of an event is the abnormal class of highest mean probability over it.

    Raises:
        ValueError: Inconsistent shapes, or fewer than two classes.
    """
    scores = np.asarray(scores, dtype=np.float64)
    class_probs = np.asarray(class_probs, dtype=np.float64)
    start_s, end_s = np.asarray(start_s, np.float64), np.asarray(end_s, np.float64)
    n = scores.shape[0]
    if scores.ndim != 1 or class_probs.shape[:1] != (n,) or class_probs.ndim != 2 or start_s.shape != (n,) \
            or end_s.shape != (n,):
        raise ValueError(f"need scores [n], class_probs [n, C], start_s [n], end_s [n]; got {scores.shape}, "
                         f"{class_probs.shape}, {start_s.shape}, {end_s.shape}")
    if class_probs.shape[1] < 2:
        raise ValueError(f"class_probs needs a normal and at least one abnormal class, got {class_probs.shape[1]}")
    runs = merge_runs(threshold_runs(scores, threshold), start_s, end_s, merge_gap_s)
    events = []
    for first, last in runs:
        span = slice(first, last + 1)
        if end_s[last] - start_s[first] < min_event_s:
            continue
        mean_probs = class_probs[span, 1:].mean(axis=0)
        best = int(np.argmax(mean_probs))
        events.append(EventSpan(
            first=first, last=last, start_s=float(start_s[first]), end_s=float(end_s[last]),
            peak_score=float(scores[span].max()), mean_score=float(scores[span].mean()),
            class_index=best + 1, class_prob=float(mean_probs[best]),
        ))
    return events
