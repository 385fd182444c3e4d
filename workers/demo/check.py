"""How well a demo result finds the injected events: per-video event matching and the pooled frame AUC.

The truth is the generator's (:class:`~workers.synthetic.SyntheticVideo`): frame ``f`` is anomalous when an
event covers its presentation time. A result's frame score is its snippet's (frame ``f`` → snippet
``f // 16``), as in the official frame-level evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model.benchmark.protocol import SNIPPET_FRAMES
from vad.schema import AnalysisResult
from vad.schema import Event as DetectedEvent
from workers.synthetic import NORMAL, Event, SyntheticVideo

TOLERANCE_S = 1.0
"""Detected starts and ends must lie this close to the truth."""


@dataclass(frozen=True)
class VideoCheck:
    """One video's detected events against its truth.

    Attributes:
        name: The video's file name.
        truth: The injected events.
        detected: The result's events.
        matched: As many detected events as injected ones, each starting and ending within the tolerance of
            its injected event (time order); a normal video matches when nothing is detected.
        classes_right: Matched events whose class is the injected one.
    """

    name: str
    truth: tuple[Event, ...]
    detected: tuple[DetectedEvent, ...]
    matched: bool
    classes_right: int


def check_video(result: AnalysisResult, video: SyntheticVideo, tolerance_s: float = TOLERANCE_S) -> VideoCheck:
    """Compare a result's events with the video's injected events."""
    truth = tuple(sorted(video.events, key=lambda e: e.start_s))
    detected = tuple(sorted(result.events, key=lambda e: e.start_s))
    matched = len(truth) == len(detected) and all(
        abs(d.start_s - t.start_s) <= tolerance_s and abs(d.end_s - t.end_s) <= tolerance_s
        for t, d in zip(truth, detected, strict=True))
    right = sum(d.class_ == t.class_name for t, d in zip(truth, detected, strict=False)) if matched else 0
    return VideoCheck(video.path.name, truth, detected, matched, right)


def frame_truth(video: SyntheticVideo) -> np.ndarray:
    """``[frames]`` 0/1: whether an event covers each frame."""
    return np.array([label != NORMAL for label in video.frame_labels()], dtype=np.float32)


def frame_scores(result: AnalysisResult) -> np.ndarray:
    """``[frames]`` anomaly score of each decoded frame: its snippet's score."""
    return np.repeat(np.asarray(result.timeline.score, dtype=np.float64), SNIPPET_FRAMES)[: result.video.frames]


def frame_auc(results: Sequence[AnalysisResult], videos: Sequence[SyntheticVideo]) -> float:
    """Frame-level ROC AUC pooled over the videos (both classes must be present)."""
    from sklearn.metrics import roc_auc_score

    scores, labels = [], []
    for result, video in zip(results, videos, strict=True):
        truth = frame_truth(video)
        if result.video.frames != len(truth):
            raise ValueError(f"{video.path.name}: the result has {result.video.frames} frames, the video "
                             f"{len(truth)}")
        scores.append(frame_scores(result))
        labels.append(truth)
    return float(roc_auc_score(np.concatenate(labels), np.concatenate(scores)))


def describe(events: Sequence[Event | DetectedEvent]) -> str:
    """``flash 3.2-6.4 s, color_shift 8.0-9.1 s`` (or ``none``)."""
    parts = [f"{e.class_name if isinstance(e, Event) else e.class_} {e.start_s:.1f}-{e.end_s:.1f} s" for e in events]
    return ", ".join(parts) or "none"
