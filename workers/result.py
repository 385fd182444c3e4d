"""Assemble the :class:`vad.schema.AnalysisResult` of one video from its features, scores and settings."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.benchmark.protocol import SNIPPET_FRAMES
from model.inference import SnippetScores
from vad import schema
from vad.net.redact import scrub_paths
from workers.encode.clip_encoder import ClipImageEncoder
from workers.encode.features import SnippetFeatures
from workers.event_finder import find_events
from workers.settings import VIEW_NAMES, WorkerSettings

DECIMALS = 6
"""Scores, probabilities and times are rounded to 1e-6 in the JSON (it keeps an hour of video small)."""

DEMO_LABEL = "synthetic demo model"


@dataclass(frozen=True)
class ModelIdentity:
    """What identifies the model that produced a result (bundle and CLIP)."""

    preset: str
    class_names: list[str]
    bundle_sha256: str | None
    demo: bool
    dsanet_precision: str


def _floats(values: np.ndarray) -> list:
    return np.round(np.asarray(values, dtype=np.float64), DECIMALS).tolist()


def video_info(feats: SnippetFeatures, filename: str | None, sha256: str | None) -> schema.VideoInfo:
    """The ``video`` block: decoded counts (not the container's claims) and what decoding worked around.

    The warnings name the file ``filename`` and quote no absolute path (decoders quote the file they were given
    and their own build paths): they reach the user as they are.
    """
    info, report = feats.info, feats.report
    name = filename or Path(info.path).name
    warnings = []
    if report.fallback_reason:
        warnings.append(f"{report.fallback_from} failed, decoded with {report.backend}: {report.fallback_reason}")
    if report.bad_packets:
        warnings.append(f"{report.bad_packets} damaged packets were skipped")
    if report.stopped_early:
        warnings.append(f"the file ends early (truncated?): {report.stopped_early}")
    if report.frame_count_mismatch:
        warnings.append(f"the container claims {report.claimed_frames} frames, {report.decoded_frames} were decoded")
    warnings = [scrub_paths(warning, {info.path: name}) for warning in warnings]
    return schema.VideoInfo(
        filename=name, sha256=sha256,
        duration_s=round(float(feats.end_s[-1]), DECIMALS), fps=info.fps,
        frames=int(report.decoded_frames if report.decoded_frames is not None else feats.n_frames.sum()),
        frames_claimed=info.frame_count, width=info.width, height=info.height, codec=info.codec,
        container=info.container, rotation=info.rotation, decoder=report.backend, warnings=warnings,
    )


def summary(scores: SnippetScores, classes: list[str], threshold: float, anomalous: bool, top: int) -> schema.Summary:
    """Max and mean score, and the abnormal classes ranked by mean probability over the snippets above the
    threshold (over all snippets when none is)."""
    above = scores.anomaly > threshold
    rows = scores.class_probs[above] if above.any() else scores.class_probs
    means = rows[:, 1:].mean(axis=0)
    order = np.argsort(-means, kind="stable")[:top]
    return schema.Summary(
        max_score=round(float(scores.anomaly.max()), DECIMALS),
        mean_score=round(float(scores.anomaly.mean()), DECIMALS),
        anomalous=anomalous,
        top_classes=[schema.ClassProb(class_=classes[i + 1], prob=round(float(means[i]), DECIMALS)) for i in order],
    )


def build_result(*, feats: SnippetFeatures, scores: SnippetScores, model: ModelIdentity,
                 encoder: ClipImageEncoder, settings: WorkerSettings, view: int, filename: str | None,
                 sha256: str | None, model_s: float, total_s: float) -> schema.AnalysisResult:
    """The full result; events use the threshold, gap and minimum length of ``settings``."""
    classes = model.class_names
    spans = find_events(scores.anomaly, scores.class_probs, feats.start_s, feats.end_s, threshold=settings.threshold,
                        merge_gap_s=settings.merge_gap_s, min_event_s=settings.min_event_s)
    events = [schema.Event(id=str(uuid.uuid4()), class_=classes[e.class_index],
                           class_prob=round(e.class_prob, DECIMALS), start_s=round(e.start_s, DECIMALS),
                           end_s=round(e.end_s, DECIMALS),
                           peak_score=round(e.peak_score, DECIMALS), mean_score=round(e.mean_score, DECIMALS))
              for e in spans]
    video = video_info(feats, filename, sha256)
    frame_scores = None
    if settings.frame_scores:  # frame f belongs to snippet f // 16 (spec A.5), whatever the frame rate
        frame_scores = _floats(np.repeat(scores.anomaly, SNIPPET_FRAMES)[: video.frames])
    return schema.AnalysisResult(
        video=video,
        model=schema.ModelInfo(
            preset=model.preset, bundle_sha256=model.bundle_sha256, clip=encoder.name,
            clip_weights_sha256=encoder.weights_sha256, clip_weights_source=encoder.weights_source,
            demo=model.demo, label=DEMO_LABEL if model.demo else None,
        ),
        settings=schema.PipelineSettings(
            snippet_frames=SNIPPET_FRAMES, keep_tail=True, frame_pick=str(settings.frame_pick), crop=VIEW_NAMES[view],
            image_size=encoder.image_size, resize=encoder.preprocess.resize, threshold=settings.threshold,
            min_event_s=settings.min_event_s, merge_gap_s=settings.merge_gap_s, precision=model.dsanet_precision,
            clip_precision=encoder.precision, device=str(encoder.device), decode_backend=settings.decode_backend,
            batch_size=settings.batch_size or encoder.batch_size, frame_scores=settings.frame_scores,
            skip_unchanged=settings.skip_unchanged,
        ),
        classes=classes,
        timeline=schema.Timeline(start_s=_floats(feats.start_s), end_s=_floats(feats.end_s),
                                 score=_floats(scores.anomaly), class_probs=_floats(scores.class_probs)),
        frame_scores=frame_scores,
        summary=summary(scores, classes, settings.threshold, bool(events), settings.top_classes),
        events=events,
        timings=schema.Timings(decode_s=round(feats.report.decode_s, 4), wait_s=round(feats.wait_s, 4),
                               encode_s=round(feats.encode_s, 4), model_s=round(model_s, 4), total_s=round(total_s, 4)),
    )
