"""Evidence of a job's events, after its analysis, from the stored video: each event's clip cut (remuxed) from the
keyframe before its pre-roll to its post-roll, and a snapshot of its peak snippet's kept frame (that frame alone
decoded)."""

from __future__ import annotations

import logging
from pathlib import Path

from vad.schema import AnalysisResult, Event
from workers.evidence.clip import cut_file
from workers.evidence.snapshot import frame_at
from workers.evidence.store import ClipSpan, EvidenceStore
from workers.settings import WorkerSettings

log = logging.getLogger(__name__)


def peak_time(result: AnalysisResult, event: Event) -> float:
    """The time of the kept frame of the event's highest-scoring snippet (the snippet's middle frame)."""
    timeline = result.timeline
    inside = [i for i, (s, e) in enumerate(zip(timeline.start_s, timeline.end_s, strict=True))
              if s >= event.start_s - 1e-6 and e <= event.end_s + 1e-6]
    if not inside:
        return (event.start_s + event.end_s) / 2
    best = max(inside, key=lambda i: timeline.score[i])
    frame = 1.0 / result.video.fps if result.video.fps else 0.0
    # the snippet's middle frame (offset 8 of 16) starts half a frame before the snippet's midpoint
    return max(timeline.start_s[best], (timeline.start_s[best] + timeline.end_s[best]) / 2 - frame / 2)


def save_job_evidence(store: EvidenceStore, video: Path, result: AnalysisResult, settings: WorkerSettings) -> int:
    """Write the evidence of every event of ``result``; how many events got some. A failure for one event is
    logged and the others go on (evidence never fails the job)."""
    saved = 0
    for event in result.events:
        try:
            peak = peak_time(result, event)
            image = frame_at(video, peak)
            start = max(0.0, event.start_s - settings.evidence_pre_roll_s)
            end = min(result.video.duration_s, event.end_s + settings.evidence_post_roll_s)

            def clip(path: Path, start: float = start, end: float = end) -> ClipSpan:
                cut = cut_file(video, start, end, path)
                return ClipSpan(cut.start_s, cut.end_s, truncated=False)

            if store.save(event.id, event.start_s, event.end_s, image, peak, clip) is None:
                return saved  # the job was deleted
            saved += 1
        except Exception as exc:  # a damaged stretch of video, a storage error: this event has no evidence
            log.warning("job %s: no evidence for event %s: %s", store.source.source_id, event.id, exc)
    return saved
