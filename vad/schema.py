"""The analysis result a user gets: one documented JSON schema, importable without torch.

Workers build these models; the service returns them (and shows them in its OpenAPI docs); the
CLI writes them. Arrays are columnar (one list per quantity) so an hour of video stays small.
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class VideoInfo(_Model):
    """What the decoder found in the file (decoded counts, not the container's claims)."""

    filename: str = Field(description="Name of the uploaded or analysed file (display only).")
    sha256: str | None = Field(None, description="SHA-256 of the file's bytes.")
    duration_s: float = Field(description="Duration covered by the decoded frames, in seconds.")
    fps: float = Field(description="Native frame rate used for 16-frame snippets.")
    frames: int = Field(description="Number of frames actually decoded.")
    frames_claimed: int | None = Field(None, description="Frame count the container claimed, if any.")
    width: int = Field(description="Upright frame width in pixels (after rotation metadata).")
    height: int = Field(description="Upright frame height in pixels.")
    codec: str
    container: str | None = Field(None, description="Container format as FFmpeg names it.")
    rotation: int = Field(0, description="Rotation applied from the file's metadata, degrees clockwise.")
    decoder: str = Field(description="Backend that decoded the frames (torchcodec, pyav or decord).")
    warnings: list[str] = Field(default_factory=list, description="What decoding had to work around: a "
                                "backend fallback, rejected packets, a truncated file, a wrong frame-count claim.")


class ModelInfo(_Model):
    """The model and weights that produced the result."""

    name: Literal["dsanet"] = "dsanet"
    preset: str = Field(description="Dataset preset of the model: ucf (UCF-Crime) or xd (XD-Violence) or custom.")
    bundle_sha256: str | None = Field(description="SHA-256 of the bundle's weights.")
    clip: str = Field(description="CLIP image encoder, e.g. ViT-B-16-quickgelu/openai.")
    clip_weights_sha256: str | None = Field(None, description="SHA-256 of the CLIP image-tower weights (as "
                                            "float32, OpenAI names): the same weights give the same digest.")
    clip_weights_source: str | None = Field(None, description="Where they came from: bundle, file or cache.")
    demo: bool = Field(False, description="True when the model was trained on synthetic data (a demo model).")
    label: str | None = Field(None, description='Human-readable label, e.g. "synthetic demo model".')


class PipelineSettings(_Model):
    """Every setting that influences the numbers, so a result can be reproduced."""

    snippet_frames: int = 16
    keep_tail: bool = Field(True, description="A final partial snippet is kept: n = ceil(frames / 16).")
    frame_pick: str = Field("middle", description="Frame of each snippet that is embedded: first, middle, an "
                                                  "offset, or 'mean' (mean of the 16 frame embeddings).")
    crop: str = Field("center", description="Spatial view embedded per frame, in the ten-crop layout: center (__0), "
                                            "top_left … bottom_right (__1-__4), center_flip (__5), …_flip (__6-__9).")
    image_size: int = Field(224, description="CLIP input size: the crop is image_size x image_size.")
    resize: int | None = Field(None, description="Short side frames are resized to before cropping "
                                                 "(null: image_size, the standard CLIP transform).")
    threshold: float = Field(0.5, description="Anomaly-score threshold for events.")
    min_event_s: float = Field(0.0, description="Events shorter than this are dropped.")
    merge_gap_s: float = Field(1.0, description="Events separated by less than this are merged.")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="DSANet precision.")
    clip_precision: Literal["fp32", "bf16", "fp16", "int8"] = Field(
        "fp32", description="CLIP image encoder precision (int8: dynamically quantised linear layers, CPU only).")
    device: str = "cpu"
    decode_backend: str = Field("auto", description="Decoding backend requested (video.decoder says which ran).")
    batch_size: int = Field(32, description="Snippets per decoded batch and images per encoder pass.")
    frame_scores: bool = Field(False, description="Whether per-frame scores were requested.")
    skip_unchanged: float = Field(0.0, description="Threshold (grey levels) under which a snippet whose scene had not "
                                                   "changed reused the last encoded snippet's features; 0: every "
                                                   "snippet encoded (the official protocol).")


class Timeline(_Model):
    """One entry per 16-frame snippet, in time order (columnar); values are rounded to 1e-6."""

    start_s: list[float]
    end_s: list[float]
    score: list[float] = Field(description="Anomaly probability σ(logits1) per snippet, in [0, 1].")
    class_probs: list[list[float]] = Field(description="Per snippet, probabilities over `classes` (sum to 1).")


class ClassProb(_Model):
    class_: str = Field(alias="class")
    prob: float


class Summary(_Model):
    max_score: float
    mean_score: float
    anomalous: bool = Field(description="True when at least one event was detected.")
    top_classes: list[ClassProb] = Field(description="Anomaly classes ranked by their mean probability over the "
                                                     "snippets above the threshold (over all snippets if none).")


class Event(_Model):
    """A contiguous run of snippets above the threshold (after merging short gaps)."""

    id: str = Field(default_factory=lambda: str(uuid.uuid4()),
                    description="Globally unique id of the event (a UUID, like a live stream event's): its evidence "
                                "is at /v1/events/{id}/snapshot.jpg, thumbnail.jpg and clip.mp4.")
    class_: str = Field(alias="class", description="Most probable anomaly class over the event.")
    class_prob: float = Field(description="Mean probability of that class over the event.")
    start_s: float
    end_s: float
    peak_score: float
    mean_score: float


class Timings(_Model):
    decode_s: float = Field(description="Seconds spent decoding (overlaps with encoding).")
    wait_s: float = Field(0.0, description="Seconds the encoder waited for decoded frames (decoding not hidden "
                                           "by the overlap).")
    encode_s: float = Field(description="Seconds spent in the CLIP image encoder.")
    model_s: float = Field(description="Seconds spent in DSANet.")
    total_s: float


class AnalysisResult(_Model):
    """The full result of analysing one video."""

    schema_version: int = SCHEMA_VERSION
    video: VideoInfo
    model: ModelInfo
    settings: PipelineSettings
    classes: list[str] = Field(description="Column order of class_probs; the first is the normal class.")
    timeline: Timeline
    frame_scores: list[float] | None = Field(None, description="Anomaly score per decoded frame, when requested.")
    summary: Summary
    events: list[Event]
    timings: Timings
