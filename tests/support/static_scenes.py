"""Skipping unchanged scenes measured: the demo's held-out videos re-rendered with a stated share of static time,
analysed with every snippet encoded and with the scene-change gate, compared (the CI test and bench/streams.py).

A video of ``duration_s`` with a static share ``s`` stands still (the normal motion stops; sensor noise and events
go on) during ``[0, s * d / 2)`` and ``[d / 2, d / 2 + s * d / 2)``, so half of its still time comes before the
middle and half after, whatever the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vad.schema import AnalysisResult
from workers.analyzer import Analyzer
from workers.demo.check import frame_auc
from workers.demo.recipe import DemoRecipe, plan_videos
from workers.synthetic import SyntheticVideo, make_video


def still_intervals(duration_s: float, share: float) -> list[tuple[float, float]]:
    """The static intervals of a video of ``duration_s`` with ``share`` of its time static."""
    half = duration_s / 2
    return [(0.0, share * half), (half, half + share * half)] if share > 0 else []


def static_videos(folder: Path, share: float, count: int, recipe: DemoRecipe | None = None,
                  size: tuple[int, int] | None = None) -> list[SyntheticVideo]:
    """The first ``count`` held-out videos of the demo recipe (its events, seeds, length and frame rate), static for
    ``share`` of their time."""
    recipe = recipe or DemoRecipe()
    out = []
    for plan in plan_videos(recipe, "heldout")[:count]:
        out.append(make_video(folder / f"{plan.name}-still{round(100 * share)}.mp4", duration_s=recipe.duration_s,
                              fps=recipe.fps, size=size or recipe.size, seed=plan.seed, events=plan.events,
                              still=still_intervals(recipe.duration_s, share)))
    return out


@dataclass(frozen=True)
class SkipComparison:
    """Every snippet encoded against the scene-change gate, over the same videos.

    Attributes:
        share: Static share of the videos' time.
        threshold: The gate's threshold (grey levels).
        snippets: Snippets over all videos.
        encoded: Snippets the gate encoded (the rest reused a feature).
        auc_all: Frame AUC with every snippet encoded.
        auc_skip: Frame AUC with the gate.
        events_all: Events found per video, every snippet encoded: ``(start_s, end_s)``.
        events_skip: The same with the gate.
    """

    share: float
    threshold: float
    snippets: int
    encoded: int
    auc_all: float
    auc_skip: float
    events_all: list[list[tuple[float, float]]]
    events_skip: list[list[tuple[float, float]]]

    @property
    def saved(self) -> float:
        """Share of encoder calls saved."""
        return 1 - self.encoded / self.snippets

    def worst_event_shift_s(self) -> float:
        """Largest move of an event's start or end between the two, over matched events; ``inf`` when the videos'
        event counts differ."""
        worst = 0.0
        for a, b in zip(self.events_all, self.events_skip, strict=True):
            if len(a) != len(b):
                return float("inf")
            for (s0, e0), (s1, e1) in zip(a, b, strict=True):
                worst = max(worst, abs(s0 - s1), abs(e0 - e1))
        return worst


def compare_skipping(analyzer: Analyzer, videos: Sequence[SyntheticVideo], share: float,
                     threshold: float) -> SkipComparison:
    """Analyse ``videos`` with every snippet encoded and with the gate at ``threshold``, and compare."""
    def run(skip: float) -> list[AnalysisResult]:
        return [analyzer.analyze(v.path, skip_unchanged=skip) for v in videos]

    calls: list[int] = []
    encoder = analyzer.encoder
    inner = encoder.encode_snippets

    def counting(frames, views=(0,)):  # type: ignore[no-untyped-def]
        calls.append(len(frames))
        return inner(frames, views)

    full = run(0.0)
    encoder.encode_snippets = counting  # type: ignore[method-assign]
    try:
        skipped = run(threshold)
    finally:
        del encoder.encode_snippets
    events = [[[(e.start_s, e.end_s) for e in r.events] for r in rs] for rs in (full, skipped)]
    return SkipComparison(share, threshold, sum(len(r.timeline.score) for r in full), sum(calls),
                          frame_auc(full, videos), frame_auc(skipped, videos), events[0], events[1])
