"""Online scoring: DSANet over a sliding window of the most recent snippets, the newest snippet's scores out.

Offline (``vad analyze``) cuts a video into consecutive chunks of the model's ``visual_length`` (256) snippets and
scores every snippet with its whole chunk, future snippets included. Online, snippet ``i`` is scored as soon as its
frame is encoded, with the chunk made of the last ``W`` snippets (``i - W + 1 .. i``, fewer at the start of a
stream) followed by ``hold`` copies of snippet ``i``'s feature, run through the official test procedure
(:func:`model.inference.score_sequences`: one zero-padded chunk with its valid length); row ``i`` is kept.

Why the hold: DSANet's outputs at the end of a sequence carry an edge effect (its local attention and graph lose
their right-hand neighbours, and the zero padding follows). Online, the newest snippet is always at the end, so
without a hold every score would be an edge score: on the demo's held-out videos the frame AUC drops from 0.998
(offline) to 0.944 and events are found within 1 s on 2 of 10 videos. Holding the present for 4 snippets (as if
the scene stayed as it is now) gives 0.992-0.994 and as many videos as offline, with no added latency and
nothing but the past used (docs/streams.md has the figures). Memory is ``W`` feature rows, whatever the stream's
duration.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.bundle import Bundle, load_bundle
from model.inference import DSANetPredictor, SnippetScores, score_sequences, validate_features
from workers.encode.clip_encoder import ClipImageEncoder, resolve_device
from workers.encode.preprocess import view_index
from workers.exceptions import ConfigurationError
from workers.settings import WorkerSettings
from workers.stream.batch_scheduler import BatchScheduler


@dataclass(frozen=True)
class SnippetScore:
    """The online scores of one snippet, out as soon as its frame is encoded.

    Attributes:
        index: Snippet number in the stream (0, 1, …; numbers of dropped snippets are skipped).
        start_s: Stream time, in seconds, at which the snippet's first frame starts.
        end_s: Stream time at which its last frame ends (``start_s + 16 / fps``).
        score: Anomaly probability ``σ(logits1)`` of the newest row of the window.
        class_probs: Refined class distribution (normal first, the model's class order), summing to 1.
        arrived_at: Unix time at which the snippet's frame was read from the source (``None`` when unknown).
        scored_at: Unix time at which the score was ready.
        context: Snippets of the past in the window that scored it (1 … ``W``; the hold not counted).
        start_at: ``start_s`` as a Unix time (the stream clock's origin plus ``start_s``; ``None`` when unknown).
    """

    index: int
    start_s: float
    end_s: float
    score: float
    class_probs: tuple[float, ...]
    arrived_at: float | None = None
    scored_at: float | None = None
    context: int = 1
    start_at: float | None = None

    @property
    def end_at(self) -> float | None:
        """``end_s`` as a Unix time."""
        return None if self.start_at is None else self.start_at + (self.end_s - self.start_s)

    @property
    def lag_s(self) -> float | None:
        """Seconds from the frame's arrival to its score."""
        if self.arrived_at is None or self.scored_at is None:
            return None
        return self.scored_at - self.arrived_at

    def to_dict(self, class_names: Sequence[str] | None = None, decimals: int = 6) -> dict[str, Any]:
        """JSON-ready fields (``class_probs`` as a list, or a ``{class: prob}`` map when ``class_names`` are given)."""
        probs = [round(p, decimals) for p in self.class_probs]
        return {
            "index": self.index, "start_s": round(self.start_s, decimals), "end_s": round(self.end_s, decimals),
            "score": round(self.score, decimals),
            "class_probs": dict(zip(class_names, probs, strict=True)) if class_names is not None else probs,
            "arrived_at": self.arrived_at, "scored_at": self.scored_at, "context": self.context,
            "start_at": self.start_at, "end_at": self.end_at,
        }


class StreamEngine:
    """The models of live scoring, loaded once and shared by any number of streams (thread-safe).

    It holds the CLIP image encoder and the DSANet predictor; each stream keeps its own :class:`OnlineScorer`
    (its window). With batching (``stream_batch_size`` not 1, the default) each stream hands its kept frames to the
    engine's :attr:`scheduler`, which encodes the frames of all streams together and scores their windows in one
    DSANet forward; without it, each stream calls :meth:`encode` and :meth:`score_windows` from its own thread.
    Forwards are serialised by one lock: on a shared device, two forwards would only compete for it.

    Args:
        bundle: A bundle (path or loaded); ``None`` uses ``settings.bundle`` (``VAD_BUNDLE``).
        settings: Worker settings; ``None`` reads them from the environment.
        encoder: A ready encoder to share (e.g. the RQ worker's); built from the bundle when omitted.
        predictor: A ready predictor of the same bundle to share.

    Raises:
        ConfigurationError: No bundle configured, or the encoder's width does not match the model.
    """

    def __init__(self, bundle: Bundle | str | Path | None = None, settings: WorkerSettings | None = None, *,
                 encoder: ClipImageEncoder | None = None, predictor: DSANetPredictor | None = None) -> None:
        self.settings = settings if settings is not None else WorkerSettings()
        source = bundle if bundle is not None else self.settings.bundle
        if source is None and predictor is None:
            raise ConfigurationError("no model bundle configured: pass --bundle or set VAD_BUNDLE")
        if predictor is not None:
            loaded = predictor.bundle
        else:
            loaded = source if isinstance(source, Bundle) else load_bundle(source)  # type: ignore[arg-type]
        device = resolve_device(self.settings.device)
        self.encoder = encoder or ClipImageEncoder.create(self.settings, loaded, device)
        if self.encoder.embed_dim != loaded.config.visual_width:
            raise ConfigurationError(f"the CLIP encoder {self.encoder.name} gives {self.encoder.embed_dim}-d features "
                                     f"but the model expects {loaded.config.visual_width}-d")
        self.predictor = predictor or DSANetPredictor(loaded, device=str(device), precision=self.settings.precision)
        self.config = loaded.config
        self.class_names: tuple[str, ...] = tuple(loaded.class_names)
        self.demo = bool(loaded.demo)
        self.view = view_index(self.settings.view_for(self.config.training.test_crop))
        self._lock = threading.Lock()
        self._scheduler: BatchScheduler | None = None
        self._scheduler_lock = threading.Lock()

    @classmethod
    def from_analyzer(cls, analyzer: Any, encoder: ClipImageEncoder | None = None) -> StreamEngine:
        """The engine of a loaded :class:`~workers.analyzer.Analyzer` (its encoder and predictor, not copies;
        ``encoder``: the streams' own, e.g. at the precision the probe chose)."""
        return cls(settings=analyzer.settings, encoder=encoder or analyzer.encoder, predictor=analyzer.predictor)

    @property
    def clip_precision(self) -> str:
        """The CLIP encoder's precision (``fp32``, ``int8``…)."""
        return self.encoder.precision

    @property
    def visual_length(self) -> int:
        """The model's chunk length (256): the longest window."""
        return int(self.config.visual_length)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB ``[N, H, W, 3]`` (one frame per snippet) → ``[N, D]`` float32 CLIP features in the test view."""
        with self._lock:
            return self.encoder.encode_snippets(frames, (self.view,))[0].numpy()

    def encode_frames(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Frames of any sizes, uint8 RGB ``[H_i, W_i, 3]`` each → ``[N, D]`` float32 features in one encoder pass
        (each preprocessed alone to the tower's square input, then the tower runs on them together)."""
        if not frames:
            return np.zeros((0, self.encoder.embed_dim), np.float32)
        with self._lock, torch.inference_mode():
            device = self.encoder.device
            images = torch.cat([self.encoder.preprocess(torch.as_tensor(f[None]).to(device), (self.view,))[0]
                                for f in frames])
            return self.encoder.encode_images(images).cpu().numpy()

    @property
    def scheduler(self) -> BatchScheduler:
        """The process's scheduler of this engine's streams (started at first use; see
        :mod:`workers.stream.batch_scheduler`)."""
        with self._scheduler_lock:
            if self._scheduler is None:
                s = self.settings
                self._scheduler = BatchScheduler(self, s.stream_batch_size or self.encoder.batch_size,
                                                 s.stream_batch_wait_ms / 1000)
            return self._scheduler

    @property
    def batching(self) -> bool:
        """Whether streams are batched (``stream_batch_size`` other than 1)."""
        return self.settings.stream_batch_size != 1

    def score_windows(self, windows: Sequence[np.ndarray]) -> list[SnippetScores]:
        """Score windows ``[n_i, D]`` (n_i ≤ 256) with the official test procedure, one chunk each."""
        tensors = [validate_features(w, self.config.visual_width) for w in windows]
        p = self.predictor
        with self._lock:
            return score_sequences(p.model, tensors, p.text_features, self.config.test_temperature, p.max_chunks,
                                   p.precision)


@dataclass
class OnlineScorer:
    """Holds the last ``window`` features of one stream and scores the newest snippet with them.

    Args:
        engine: The shared models.
        window: Snippets of context (``W``); ``window + hold`` is at most the model's ``visual_length`` (256).
        hold: Copies of the newest snippet's feature that follow the window (see the module docstring).

    Raises:
        ConfigurationError: ``window`` or ``hold`` out of range.
    """

    engine: StreamEngine
    window: int = 253
    hold: int = 3
    _features: deque[np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        length = self.engine.visual_length
        if self.hold < 0 or not 1 <= self.window <= length - self.hold:
            raise ConfigurationError(f"stream window plus hold must fit the model's visual_length ({length} "
                                     f"snippets) with a window of at least 1; got window {self.window}, hold "
                                     f"{self.hold}")
        self._features = deque(maxlen=self.window)

    def __len__(self) -> int:
        return len(self._features)

    def reset(self) -> None:
        """Forget the context (a new connection starts with an empty window)."""
        self._features.clear()

    def push(self, feature: np.ndarray | torch.Tensor, index: int, start_s: float, end_s: float, *,
             arrived_at: float | None = None, scored_at: float | None = None,
             start_at: float | None = None) -> SnippetScore:
        """Add the newest snippet's feature ``[D]`` and score it with the window.

        Args:
            feature: The snippet's CLIP feature.
            index: Its snippet number.
            start_s: Its start time in the stream.
            end_s: Its end time.
            arrived_at: Unix time its frame arrived (for the lag).
            scored_at: Unix time to record as the scoring time (``None``: now).
            start_at: Its start as a Unix time (the stream clock's origin plus ``start_s``).
        """
        window = self.append(feature)
        scores = self.engine.score_windows([window])[0]
        return self.result(scores, index, start_s, end_s, arrived_at=arrived_at, scored_at=scored_at,
                           start_at=start_at)

    def append(self, feature: np.ndarray | torch.Tensor) -> np.ndarray:
        """Add the newest snippet's feature ``[D]``; the window to score, ``[n + hold, D]`` (see :meth:`result`)."""
        row = np.asarray(feature, dtype=np.float32).reshape(-1)
        self._features.append(row)
        return np.stack([*self._features, *[row] * self.hold])

    def result(self, scores: SnippetScores, index: int, start_s: float, end_s: float, *,
               arrived_at: float | None = None, scored_at: float | None = None,
               start_at: float | None = None) -> SnippetScore:
        """The newest snippet's score from the scores of the window :meth:`append` gave (arguments as :meth:`push`).

        Raises:
            ValueError: The model gave a non-finite score.
        """
        newest = len(self._features) - 1
        score = float(scores.anomaly[newest])
        if not math.isfinite(score):
            raise ValueError(f"snippet {index}: the model gave a non-finite score")
        return SnippetScore(index=index, start_s=start_s, end_s=end_s, score=score,
                            class_probs=tuple(float(p) for p in scores.class_probs[newest]), arrived_at=arrived_at,
                            scored_at=scored_at if scored_at is not None else time.time(), context=len(self._features),
                            start_at=start_at)
