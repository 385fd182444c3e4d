"""Video → CLIP features per snippet, with decoding in a producer thread overlapped with encoding.

Memory stays flat in the video's length: frames live only in the bounded queue and the batch being
encoded; what accumulates is the features (``n x 512`` float32 per view, 14 MB for an hour at 30 fps).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.benchmark.protocol import SNIPPET_FRAMES
from workers.encode.clip_encoder import ClipImageEncoder
from workers.encode.prefetch import Prefetcher
from workers.encode.scene_change import ChangeGate
from workers.exceptions import DecodeCancelled, DecodeTimeout, VideoError
from workers.settings import WorkerSettings
from workers.video import DecodeReport, SnippetBatch, VideoInfo, iter_snippets

ProgressFn = Callable[[str, float], None]
"""``progress(stage, fraction)``: stage name and overall fraction done in ``[0, 1]``, non-decreasing."""

STALL_GRACE_S = 30.0
"""Extra seconds the encoder waits on a silent decoder beyond ``decode_timeout_s`` before giving up on it."""


@dataclass(frozen=True)
class SnippetFeatures:
    """CLIP features of one video, one row per 16-frame snippet.

    Attributes:
        info: The probed video.
        report: What decoding found (decoded frame count, backend, damage).
        views: Ten-crop view index of each feature set.
        features: ``[V, n, D]`` float32, in the order of ``views``.
        start_s: Snippet start times ``[n]``.
        end_s: Snippet end times ``[n]``.
        n_frames: Frames each snippet covers ``[n]`` (16 except a partial tail).
        encode_s: Seconds in preprocessing and the CLIP encoder.
        wait_s: Seconds the encoder waited for the decoder.
    """

    info: VideoInfo
    report: DecodeReport
    views: tuple[int, ...]
    features: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    n_frames: np.ndarray
    encode_s: float
    wait_s: float


@dataclass(frozen=True)
class _Started:
    info: VideoInfo


@dataclass(frozen=True)
class _Finished:
    report: DecodeReport


class FeatureExtractor:
    """Streams a video through the decoder (producer thread) and the CLIP encoder (calling thread).

    Args:
        encoder: The loaded image encoder.
        settings: Decoding defaults (backend, timeout, frame pick, batch size, queue depth).
    """

    def __init__(self, encoder: ClipImageEncoder, settings: WorkerSettings) -> None:
        self.encoder = encoder
        self.settings = settings

    def extract(self, path: str | Path, views: Sequence[int] = (0,), *, settings: WorkerSettings | None = None,
                progress: ProgressFn | None = None, stop: threading.Event | None = None,
                span: tuple[float, float] = (0.0, 1.0), name: str | None = None) -> SnippetFeatures:
        """Decode ``path`` and embed every snippet in each of ``views``.

        Args:
            path: The video file.
            views: Ten-crop view indices (0 centre, 5 mirrored centre, …).
            settings: Per-call settings (defaults to the extractor's).
            progress: Called with ``("encoding", fraction)``, the fraction mapped into ``span``.
            stop: Set it from another thread to cancel (:class:`DecodeCancelled`).
            span: Part of the overall progress this extraction covers.
            name: What error messages call the video (the name its user knows); the file's own when ``None``.

        Raises:
            VideoError: The file is not a usable video.
            DecodeTimeout: Decoding exceeded ``decode_timeout_s``.
            DecodeCancelled: ``stop`` was set.
        """
        s = settings or self.settings
        path = Path(path)

        def produce(halt: threading.Event) -> Iterator[object]:
            pick = "all" if s.frame_pick == "mean" else s.frame_pick
            with iter_snippets(path, snippet_frames=SNIPPET_FRAMES, frame_pick=pick, backend=s.decode_backend,
                               batch_size=s.batch_size or self.encoder.batch_size, keep_tail=True,
                               timeout_s=s.decode_timeout_s, stop=halt,
                               threads=s.decode_threads, name=name) as stream:
                yield _Started(stream.info)
                yield from stream
                yield _Finished(stream.report)

        def check(waited_s: float) -> None:
            if stop is not None and stop.is_set():
                raise DecodeCancelled(path, name=name)
            if s.decode_timeout_s is not None and waited_s > s.decode_timeout_s + STALL_GRACE_S:
                raise DecodeTimeout(path, s.decode_timeout_s, waited_s, name=name)

        state = _Accumulator(self.encoder, tuple(views), progress, span, ChangeGate(s.skip_unchanged))
        with Prefetcher(produce, depth=self.settings.queue_batches, check=check, name="vad-decode") as items:
            for item in items:
                check(0.0)
                state.take(item)
            waited = items.waited_s
        return state.result(path, waited, name)


class _Accumulator:
    """Consumes the producer's items: encodes batches, collects features and times, reports progress."""

    def __init__(self, encoder: ClipImageEncoder, views: tuple[int, ...], progress: ProgressFn | None,
                 span: tuple[float, float], gate: ChangeGate) -> None:
        self.encoder, self.views, self.progress, self.span, self.gate = encoder, views, progress, span, gate
        self.info: VideoInfo | None = None
        self.report: DecodeReport | None = None
        self.expected = 1
        self.done = 0
        self.encode_s = 0.0
        self.parts: list[torch.Tensor] = []
        self.times: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def take(self, item: object) -> None:
        if isinstance(item, _Started):
            self.info = item.info
            self.expected = max(1, math.ceil((item.info.estimated_frames or 1) / SNIPPET_FRAMES))
            self._report()
        elif isinstance(item, _Finished):
            self.report = item.report
        elif isinstance(item, SnippetBatch):
            start = time.perf_counter()
            self.parts.append(self._encode(item.frames))
            self.encode_s += time.perf_counter() - start
            self.times.append((item.start_s, item.end_s, item.n_frames))
            self.done += len(item)
            self._report()

    def _encode(self, frames: np.ndarray) -> torch.Tensor:
        """``[V, n, D]`` features of a batch; with the scene-change gate on, unchanged snippets (judged on their
        middle frame) take the last encoded snippet's features."""
        if not self.gate.enabled:
            return self.encoder.encode_snippets(frames, self.views)
        encode, take = self.gate.plan(frames[:, frames.shape[1] // 2] if frames.ndim == 5 else frames)
        encoded = self.encoder.encode_snippets(frames[encode], self.views) if len(encode) else None
        last = self.parts[-1][:, -1:] if self.parts else None
        pool = torch.cat([t for t in (last, encoded) if t is not None], dim=1)
        return pool[:, torch.as_tensor(take + (1 if last is not None else 0))]

    def _report(self) -> None:
        if self.progress is not None:
            low, high = self.span
            self.progress("encoding", low + (high - low) * min(self.done / self.expected, 0.99))

    def result(self, path: Path, waited_s: float, name: str | None) -> SnippetFeatures:
        if self.info is None or self.report is None:
            raise RuntimeError("the decoder ended without describing the video")
        if not self.parts:
            hint = "Check that the upload finished, or re-encode the file"
            raise VideoError(path, "no frame could be decoded", hint, name=name)
        start_s, end_s, n_frames = (np.concatenate(cols) for cols in zip(*self.times, strict=True))
        return SnippetFeatures(
            info=self.info, report=self.report, views=self.views,
            features=torch.cat(self.parts, dim=1).numpy().astype(np.float32, copy=False),
            start_s=start_s, end_s=end_s, n_frames=n_frames, encode_s=self.encode_s, wait_s=waited_s,
        )
