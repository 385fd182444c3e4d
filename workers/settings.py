"""Worker settings: the one place the video pipeline reads its environment (prefix ``VAD_``).

Every field is an environment variable (``VAD_BUNDLE``, ``VAD_CLIP_WEIGHTS``, ``VAD_THRESHOLD``…) and
can be passed explicitly, which wins over the environment. Fields that change only one analysis
(threshold, frame pick, crop…) can also be overridden per call, see :data:`JOB_FIELDS`; the others
(bundle, weights, device, precision) are fixed when :class:`~workers.analyzer.Analyzer` loads its models.

This module imports no torch: the supervisor (``vad worker``), which must stay CUDA-free, reads it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from model.benchmark.protocol import SNIPPET_FRAMES
from vad.settings import QueueSettings
from vad.streams import RtspTransport

VIEW_NAMES: tuple[str, ...] = (
    "center", "top_left", "top_right", "bottom_left", "bottom_right",
    "center_flip", "top_left_flip", "top_right_flip", "bottom_left_flip", "bottom_right_flip",
)
"""The ten-crop layout of the VadCLIP features (spec A.1): file suffix ``__k`` is ``VIEW_NAMES[k]``.
``*_flip`` is the horizontal mirror of the corresponding crop."""

_TOPIC_PREFIX = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


def is_topic_prefix(text: str) -> bool:
    """Whether ``text`` can start MQTT topic names: levels of ``[A-Za-z0-9_.-]`` joined by ``/``."""
    return bool(_TOPIC_PREFIX.fullmatch(text))


FramePickSetting = Literal["first", "middle", "mean"] | int

JOB_FIELDS: frozenset[str] = frozenset({
    "frame_pick", "crop", "threshold", "merge_gap_s", "min_event_s", "frame_scores", "skip_unchanged", "top_classes",
    "decode_backend", "decode_timeout_s", "decode_threads",
})
"""Settings :meth:`~workers.analyzer.Analyzer.analyze` accepts as per-call overrides."""


class WorkerSettings(QueueSettings):
    """Settings of the video → result pipeline (``vad analyze``, ``vad extract`` and the RQ worker).

    The queue, storage and retention settings shared with the API come from
    :class:`vad.settings.QueueSettings`.
    """

    model_config = SettingsConfigDict(env_prefix="VAD_", extra="forbid")

    bundle: Path | None = Field(None, description="DSANet bundle used when none is given explicitly (vad "
                                                  "import-checkpoint makes one); the RQ worker serves it as 'default'.")
    clip_weights: Path | None = Field(None, description="A local open_clip or OpenAI CLIP checkpoint (.pt, .bin, "
                                                        ".safetensors) for bundles that carry no CLIP image tower.")
    clip_source: Literal["auto", "bundle", "file", "cache"] = Field(
        "auto", description="Where the CLIP image weights come from: auto (the bundle's, else clip_weights, else "
                            "open_clip's cache), or only one of bundle, file, cache.")
    clip_cache_dir: Path | None = Field(None, description="open_clip's cache directory (never downloads); unset: its "
                                                          "defaults (the Hugging Face hub cache and ~/.cache/clip).")
    device: str = Field("auto", description="cpu, cuda, cuda:N, mps or auto (CUDA when available).")
    gpus: str = Field("auto", description="GPUs of the worker processes of vad worker, one each through "
                                         "CUDA_VISIBLE_DEVICES: auto (CUDA_VISIBLE_DEVICES if set, else every GPU "
                                         "nvidia-smi lists), none, or a comma list of indices or UUIDs. Used when "
                                         "device is auto or cuda; cuda:N pins every process to GPU N.")
    workers_per_gpu: int = Field(1, ge=1, le=64, description="Worker processes per GPU when vad worker is not given "
                                                             "--concurrency (they share the GPU; see docs for the "
                                                             "measured throughput).")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="DSANet precision; fp32 reproduces the authors' outputs.")
    clip_precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = Field(
        "auto", description="CLIP image-encoder precision; auto is bf16 on CUDA (fp16 where bf16 is unsupported) and "
                            "on CPUs with native bf16 (AVX-512 BF16 or AMX: ~2x fp32), fp32 on other CPUs. int8 "
                            "(CPU only, opt-in): every linear layer of the ViT dynamically quantised, 1.6-2.3x fp32's "
                            "images/s on AVX2 CPUs, 2.9-3.3x with AVX-512 VNNI (docs/analysis.md, CPU encoder).")
    batch_size: int | None = Field(None, ge=1, le=4096, description="Snippets per decoded batch and images per "
                                   "encoder pass; unset: the device's measured best (8 on CPU, 32 on GPU).")
    queue_batches: int = Field(2, ge=1, le=64, description="Decoded batches the decoding thread may hold ahead of the "
                                                           "encoder.")
    decode_backend: Literal["auto", "pyav", "torchcodec", "decord"] = Field(
        "auto", description="auto (the installed decoders, fastest first: pyav, torchcodec, decord; each one that "
                            "fails on a file hands over to the next), pyav, torchcodec or decord.")
    decode_threads: int = Field(0, ge=0, le=64, description="Decoder threads; 0 lets the library choose.")
    decode_timeout_s: float | None = Field(1800.0, ge=0, description="Seconds of decoding (probe included) before the "
                                                                     "job fails; 0 or none: no limit.")
    frame_pick: FramePickSetting = Field(
        "middle", description="Frame of each 16-frame snippet that is embedded (first, middle, an offset 0-15), or "
                              "mean: the mean of the embeddings of all 16 frames (16x the encoder work).")
    crop: str = Field(
        "auto", description="Single view embedded per frame: center, top_left, top_right, bottom_left, bottom_right or "
                            "their `*_flip` mirrors, or auto: the test crop of the bundle's preset (center_flip = "
                            "`__5` for UCF-Crime, center = `__0` for XD).")
    resize: int | None = Field(None, ge=1, le=4096, description="Short side, in pixels, frames are resized to before "
                                                                "cropping; unset: the model's image size (the "
                                                                "standard CLIP transform).")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Anomaly score above which a snippet belongs to an "
                                                              "event.")
    merge_gap_s: float = Field(1.0, ge=0.0, description="Events less than this many seconds apart are merged.")
    min_event_s: float = Field(0.0, ge=0.0, description="Events shorter than this many seconds (after merging) are "
                                                        "dropped.")
    frame_scores: bool = Field(False, description="Also return one anomaly score per decoded frame.")
    skip_unchanged: float = Field(0.0, ge=0, le=255, description="Reuse the last encoded snippet's CLIP feature for "
                                                                 "a snippet whose frame moved no cell (about 1/64 "
                                                                 "of its width) by more than this many grey levels "
                                                                 "since; 0 (default): every snippet is encoded, the "
                                                                 "official protocol.")
    top_classes: int = Field(3, ge=1, le=64, description="Anomaly classes listed in the result's summary.")
    models: dict[str, Path] = Field(
        default_factory=dict, description='Extra models the RQ worker serves, by name (JSON, e.g. {"xd": '
                                          '"/models/xd.safetensors"}); the bundle is served as default.')
    heartbeat_interval_s: float = Field(5.0, gt=0, description="How often a busy worker process refreshes its job's "
                                                               "heartbeat.")
    heartbeat_ttl_s: int = Field(20, ge=2, description="A job whose heartbeat is older than this belongs to a dead "
                                                       "worker and is retried.")
    hard_timeout_grace_s: float = Field(60.0, ge=0, description="A worker process whose job runs this long past its "
                                                                "timeout is killed.")
    max_jobs_per_process: int = Field(0, ge=0, description="A worker process is replaced after this many jobs (0: "
                                                           "never).")
    # live streams (workers/stream, vad watch): the event threshold is `threshold`
    stream_window: int = Field(253, ge=1, le=256, description="Snippets of context DSANet scores each new snippet of "
                                                              "a live stream with (the most recent ones); with the "
                                                              "hold, at most the model's visual_length (256).")
    stream_hold: int = Field(4, ge=0, le=64, description="Copies of the newest snippet that follow the window, so "
                                                         "that it is not scored at the sequence's edge (0: the "
                                                         "window alone; see docs/streams.md).")
    stream_hysteresis: float = Field(0.0, ge=0.0, le=1.0, description="A live event, once started above the "
                                                                      "threshold, goes on while scores stay above "
                                                                      "threshold minus this (the merge gap already "
                                                                      "bridges short dips).")
    stream_min_event_s: float = Field(0.0, ge=0.0, description="A live event opens once it has lasted this many "
                                                               "seconds; shorter ones are never reported.")
    stream_merge_gap_s: float = Field(0.5, ge=0.0, description="A live event closes once scores have stayed low this "
                                                               "many seconds; shorter dips are bridged.")
    stream_queue_depth: int = Field(1, ge=1, le=2, description="Snippets waiting for the model per stream; when the "
                                                               "model falls behind, newer snippets replace older ones "
                                                               "(counted as dropped).")
    stream_connect_timeout_s: float = Field(30.0, gt=0, description="A stream that delivers no frame within this many "
                                                                    "seconds of its start fails.")
    stream_read_timeout_s: float = Field(5.0, gt=0, description="A connection silent this many seconds is lost and "
                                                                "reopened.")
    stream_backoff_initial_s: float = Field(0.5, gt=0, description="First wait before reopening a lost stream; it "
                                                                   "doubles on each failed attempt.")
    stream_backoff_max_s: float = Field(30.0, gt=0, description="Longest wait between attempts to reopen a stream.")
    stream_rtsp_transport: RtspTransport = Field("auto", description="How RTSP streams carry their media unless a "
                                                                     "stream says: tcp (interleaved in the RTSP "
                                                                     "connection, what most cameras and NVRs serve "
                                                                     "best), udp, or auto (TCP first, then UDP; the "
                                                                     "one that worked is kept for reconnections).")
    stream_precision_probe: bool = Field(True, description="With clip_precision auto on a CPU, live streams run "
                                                       "at the precision a probe at worker start measured fastest "
                                                       "(fp32, int8, bf16 with the loaded weights) among those "
                                                       "whose features keep stream_precision_min_cosine to fp32's; "
                                                       "cached per CPU, torch and CLIP weights. false: streams use "
                                                       "clip_precision like uploads (docs/streams.md).")
    stream_precision_min_cosine: float = Field(0.995, ge=0.9, le=1.0, description="Lowest cosine to the fp32 "
                                                                                 "features, on every probe frame, "
                                                                                 "of a precision streams may run "
                                                                                 "at.")
    precision_cache_dir: Path | None = Field(None, description="Where the precision probe keeps its choices (one "
                                                               "JSON file per CPU, torch and CLIP weights); unset: "
                                                               "~/.cache/dsanet-vad/precision.")
    stream_decode_threads: int = Field(1, ge=0, le=16, description="Decoder threads per live stream (slice "
                                                                   "threading: no added latency); 0 lets FFmpeg "
                                                                   "choose (one per core, frame threading).")
    stream_skip_frames: Literal["none", "nonref"] = Field(
        "nonref", description="Decoding of live streams: nonref skips the frames no other frame refers to (most "
                              "B-frames) unless one is a snippet's kept frame, so the kept frames are the same; none "
                              "decodes every frame (docs/streams.md, Decoding less).")
    stream_snapshot_every_s: float = Field(10.0, ge=0, description="How often a live stream's latest kept frame "
                                                                   "is written to Redis as a JPEG, the camera now "
                                                                   "that GET /v1/streams/{id}/snapshot.jpg serves "
                                                                   "(with evidence on); 0: never, the route serves "
                                                                   "the newest event's snapshot.")
    stream_status_interval_s: float = Field(1.0, gt=0, description="How often a live stream reports its status (lag, "
                                                                   "counts) besides every change of state.")
    stream_batch_size: int = Field(0, ge=0, le=1024, description="Most kept frames of a worker process's streams "
                                                         "encoded in one CLIP forward (their windows scored in one "
                                                         "DSANet forward); 0: the encoder's batch (8 on a CPU, 32 "
                                                         "on CUDA); 1: no batching, each stream encodes and scores "
                                                         "its own snippet in turn.")
    stream_batch_wait_ms: float = Field(50.0, ge=0, le=2000, description="Longest a kept frame waits for frames of "
                                                                         "other streams to join its batch (it goes "
                                                                         "at once when every stream has one "
                                                                         "waiting or the batch is full).")
    stream_skip_unchanged: float = Field(8.0, ge=0, le=255, description="A kept frame of a live stream none of whose "
                                                                        "cells (about 1/64 of its width) moved by "
                                                                        "more than this many grey levels since the "
                                                                        "last encoded frame reuses that frame's CLIP "
                                                                        "feature instead of a forward; 0: every "
                                                                        "frame is encoded (docs/streams.md).")

    # evidence (workers/evidence): a snapshot, a thumbnail and a clip of every event, live and uploaded
    evidence: bool = Field(True, description="Keep evidence of every event (a JPEG snapshot of its peak, a thumbnail, "
                                             "an MP4 clip from the pre-roll to the post-roll), in the storage "
                                             "under evidence/{event id}/ (docs/review.md, Evidence).")
    evidence_pre_roll_s: float = Field(5.0, ge=0, le=120, description="Seconds of video before an event's start in "
                                                                     "its clip (from the keyframe before).")
    evidence_post_roll_s: float = Field(5.0, ge=0, le=120, description="Seconds of video after an event's end in its "
                                                                      "clip; a live clip is written once they have "
                                                                      "passed.")
    evidence_thumbnail_width: int = Field(320, ge=32, le=1920, description="Width in pixels of an event's thumbnail "
                                                                           "(the snapshot scaled down).")
    evidence_buffer_mb: float = Field(64.0, gt=0, le=4096, description="Most compressed video, in MiB, a live "
                                                                      "stream's ring buffer holds (the pre-roll, "
                                                                      "plus an open event and its post-roll); an "
                                                                      "event longer than that gets a clip of its "
                                                                      "end only.")
    evidence_max_clip_s: float = Field(300.0, gt=0, description="Longest clip: a longer event's clip covers its last "
                                                                "this many seconds and its post-roll.")
    evidence_retention_s: int = Field(30 * 24 * 3600, gt=0, description="Evidence is deleted this long after it was "
                                                                        "written (and with its job or stream).")
    evidence_max_gb: float = Field(50.0, ge=0, description="Most storage, in GiB, all evidence takes: beyond it the "
                                                           "oldest events' evidence is deleted first (0: no limit).")

    # MQTT (workers/mqtt): events, per-stream state and Home Assistant discovery; off while mqtt_host is unset
    mqtt_host: str | None = Field(None, description="MQTT broker host; unset: MQTT is off. Events, per-stream state "
                                                    "and Home Assistant discovery are published there (docs/review.md"
                                                    ", MQTT).")
    mqtt_port: int = Field(1883, ge=1, le=65535, description="MQTT broker port (8883 is the usual one with TLS).")
    mqtt_username: str | None = Field(None, description="MQTT user name; unset: connect without credentials.")
    mqtt_password: SecretStr | None = Field(None, description="MQTT password (with mqtt_username).")
    mqtt_tls: bool = Field(False, description="Connect to the broker over TLS, its certificate checked against "
                                              "mqtt_ca_file (or the system's CAs) and its host name.")
    mqtt_ca_file: Path | None = Field(None, description="CA certificate (PEM) the broker's certificate is checked "
                                                        "against; unset: the system's CAs. Needs mqtt_tls.")
    mqtt_cert_file: Path | None = Field(None, description="Client certificate (PEM) for brokers that require one; "
                                                          "needs mqtt_tls.")
    mqtt_key_file: Path | None = Field(None, description="Private key (PEM) of mqtt_cert_file, when the certificate "
                                                         "file does not hold it.")
    mqtt_tls_insecure: bool = Field(False, description="Accept a broker certificate whose host name does not match "
                                                       "(the chain is still checked). For tests only.")
    mqtt_topic_prefix: str = Field("vad", description="First level(s) of every topic this service publishes, e.g. "
                                                      "vad/streams/ID/anomaly.")
    mqtt_client_id: str = Field("dsanet-vad", description="MQTT client id; the worker process's name is appended, "
                                                          "so that processes never take each other's connection.")
    mqtt_score_interval_s: float = Field(5.0, gt=0, description="The latest score of a stream is published at most "
                                                                "once per this many seconds.")
    mqtt_discovery_prefix: str | None = Field(
        "homeassistant", description="Topic prefix of Home Assistant MQTT discovery (a binary sensor and a score "
                                     "sensor per stream); empty: no discovery messages.")
    mqtt_keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive: the broker publishes this "
                                                                 "service's offline status about 1.5x this long "
                                                                 "after its connection died.")

    @field_validator("frame_pick")
    @classmethod
    def _check_frame_pick(cls, value: FramePickSetting) -> FramePickSetting:
        if isinstance(value, int) and not 0 <= value < SNIPPET_FRAMES:
            raise ValueError(f"frame_pick offset must be in [0, {SNIPPET_FRAMES}), got {value}")
        return value

    @field_validator("crop")
    @classmethod
    def _check_crop(cls, value: str) -> str:
        if value != "auto" and value not in VIEW_NAMES:
            raise ValueError(f"crop must be 'auto' or one of {', '.join(VIEW_NAMES)}; got {value!r}")
        return value

    @field_validator("decode_timeout_s", mode="before")
    @classmethod
    def _none_is_no_limit(cls, value: Any) -> Any:
        # an environment variable cannot be unset to mean "no limit" when unset means the default
        return None if isinstance(value, str) and value.strip().lower() == "none" else value

    @field_validator("decode_timeout_s")
    @classmethod
    def _zero_is_no_limit(cls, value: float | None) -> float | None:
        return None if value == 0 else value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        head, _, index = value.partition(":")
        if head not in ("auto", "cpu", "cuda", "mps") or (index and not (head == "cuda" and index.isdigit())):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps; got {value!r}")
        return value

    @field_validator("mqtt_host", "mqtt_discovery_prefix", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("mqtt_topic_prefix", "mqtt_discovery_prefix")
    @classmethod
    def _check_topic_prefix(cls, value: str | None) -> str | None:
        if value is not None and not is_topic_prefix(value):
            raise ValueError(f"an MQTT topic prefix is one or more levels of letters, digits, '_', '-' or '.' "
                             f"separated by '/' (no '+', '#', leading or trailing '/'); got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_mqtt_tls(self) -> WorkerSettings:
        if not self.mqtt_tls and (self.mqtt_ca_file or self.mqtt_cert_file or self.mqtt_key_file):
            raise ValueError("mqtt_ca_file, mqtt_cert_file and mqtt_key_file are used only over TLS: set "
                             "VAD_MQTT_TLS=true")
        if self.mqtt_key_file and not self.mqtt_cert_file:
            raise ValueError("mqtt_key_file is the key of mqtt_cert_file: set VAD_MQTT_CERT_FILE too")
        return self

    def with_overrides(self, **overrides: Any) -> WorkerSettings:
        """A validated copy with some per-job fields changed (see :data:`JOB_FIELDS`).

        Raises:
            ValueError: A field is not a per-job field (pydantic's ``ValidationError`` for bad values).
        """
        unknown = sorted(set(overrides) - JOB_FIELDS)
        if unknown:
            raise ValueError(f"cannot override {', '.join(unknown)} per analysis; per-job settings are "
                             f"{', '.join(sorted(JOB_FIELDS))}")
        if not overrides:
            return self
        # explicit arguments win over the environment, so every field is passed
        return type(self)(**{**self.model_dump(), **overrides})

    def view_for(self, test_crop: int) -> str:
        """The crop actually used: :attr:`crop`, or for ``auto`` the preset's test crop index."""
        if self.crop != "auto":
            return self.crop
        return VIEW_NAMES[test_crop] if 0 <= test_crop < len(VIEW_NAMES) else "center"
