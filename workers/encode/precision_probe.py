"""The CLIP precision of live scoring, chosen by measuring the loaded weights on the CPU at hand.

``auto`` (:func:`~workers.encode.clip_encoder.resolve_precision`) decides from the CPU's flags alone, and keeps
fp32 on CPUs without native bf16, where int8 runs 1.6-2.3x faster. Whether int8 is close enough depends on the
weights (a trained ViT's activation outliers are what dynamic quantisation handles worst, and random weights say
nothing of them), so for live streams a worker measures instead: at start it encodes a few synthetic scenes
(:func:`probe_frames`: smooth textures, solid shapes with edges; not noise) at fp32, int8 and bf16
with the weights it loaded, and streams run at the fastest whose features keep a cosine of at least
``stream_precision_min_cosine`` (0.995) to fp32's, frame by frame. The choice is cached in a JSON file per
(CPU model, torch version, torch threads, CLIP weights, batch): a restart on the same machine reads it instead of
measuring again.

A precision that cannot win is not measured to the end: after a one-image warm-up, one more than
:data:`SLOW_FACTOR` times slower than the fastest so far is recorded as such and dropped (bf16 on a CPU that
emulates it runs 4-12x slower than fp32). Uploads keep the official fp32 features (``clip_precision``); a
``clip_precision`` other than ``auto`` applies to streams too, without a probe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from workers.encode.clip_encoder import ClipImageEncoder
from workers.encode.cpu import cpu_model
from workers.settings import WorkerSettings

logger = logging.getLogger(__name__)

CANDIDATES: tuple[str, ...] = ("fp32", "int8", "bf16")
"""What the probe measures on a CPU, in this order (fp32 first: the reference of the cosines)."""

SLOW_FACTOR = 3.0
"""A candidate whose one-image warm-up takes this many times the fastest one's is not measured further."""

PROBE_SIZE = (640, 360)
"""Width and height of the probe's frames (a camera sub-stream's)."""

CACHE_VERSION = 1

Source = Literal["probe", "cache", "setting"]


@dataclass(frozen=True)
class Measurement:
    """One candidate precision on the probe's frames.

    Attributes:
        precision: ``fp32``, ``int8``, ``bf16``…
        seconds_per_image: Median seconds per image over the timed passes (the warm-up's for one dropped as too
            slow); ``None`` when it could not run.
        cosine_min: Lowest cosine of its features to fp32's over the frames (1.0 for fp32).
        note: Why it was not measured fully, or failed.
    """

    precision: str
    seconds_per_image: float | None
    cosine_min: float | None
    note: str = ""


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision live streams run at, and how it was decided.

    Attributes:
        precision: The chosen precision.
        source: ``probe`` (measured now), ``cache`` (measured before on this machine) or ``setting``
            (``clip_precision`` set, or the probe off).
        key: The cache key (``""`` for a setting).
        measurements: What the probe measured (empty for a setting).
        min_cosine: The cosine a candidate had to keep.
        measured_at: Unix time of the measurement.
    """

    precision: str
    source: Source
    key: str = ""
    measurements: tuple[Measurement, ...] = ()
    min_cosine: float = 0.995
    measured_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"version": CACHE_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrecisionChoice:
        """A cached choice (as :meth:`to_dict` wrote it), marked ``cache``."""
        measurements = tuple(Measurement(**m) for m in data["measurements"])
        return cls(precision=str(data["precision"]), source="cache", key=str(data["key"]), measurements=measurements,
                   min_cosine=float(data["min_cosine"]), measured_at=float(data["measured_at"]))

    def summary(self) -> str:
        """One line for the log: the choice, where it came from and each candidate's figures."""
        parts = []
        for m in self.measurements:
            speed = "-" if m.seconds_per_image is None else f"{1.0 / m.seconds_per_image:.2f} img/s"
            cosine = "-" if m.cosine_min is None else f"cos {m.cosine_min:.5f}"
            parts.append(f"{m.precision} {speed} {cosine}{' (' + m.note + ')' if m.note else ''}")
        return f"{self.precision} ({self.source}{': ' + '; '.join(parts) if parts else ''})"


def pick(measurements: Sequence[Measurement], min_cosine: float) -> str:
    """The fastest measured precision whose cosine to fp32 is at least ``min_cosine`` (fp32 always qualifies).

    Raises:
        ValueError: fp32 itself was not measured (nothing to compare with, nothing safe to fall back to).
    """
    if not any(m.precision == "fp32" and m.seconds_per_image is not None for m in measurements):
        raise ValueError("the probe has no fp32 measurement: cannot choose a precision")
    eligible = [m for m in measurements if m.seconds_per_image is not None
                and (m.precision == "fp32" or (m.cosine_min is not None and m.cosine_min >= min_cosine))]
    return min(eligible, key=lambda m: m.seconds_per_image or 0.0).precision


def probe_key(encoder: ClipImageEncoder, frames: int, cpu: str | None = None) -> str:
    """The cache key: what the timings and cosines depend on (CPU model, torch version and threads, the CLIP
    weights, their image size, the batch measured)."""
    parts = [cpu or cpu_model(), torch.__version__, str(torch.get_num_threads()), encoder.weights_sha256,
             str(encoder.image_size), str(frames), ",".join(CANDIDATES)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def probe_frames(count: int, size: tuple[int, int] = PROBE_SIZE, seed: int = 7) -> np.ndarray:
    """``count`` synthetic scenes ``[count, H, W, 3]`` uint8: a lit background with smooth textures, solid shapes
    with sharp edges and a little sensor noise (what video frames hold and uniform noise does not)."""
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for _ in range(count):
        light = 60 + 120 * (y / height) * rng.uniform(0.5, 1.0)
        texture = 25 * (np.sin(x / rng.uniform(4, 40) + rng.uniform(0, 6)) * np.cos(y / rng.uniform(4, 40)))
        frame = np.stack([light * rng.uniform(0.6, 1.2) + texture for _ in range(3)], axis=-1)
        for _ in range(int(rng.integers(3, 8))):  # objects: boxes and discs of flat colours
            h, w = int(rng.integers(height // 10, height // 3)), int(rng.integers(width // 12, width // 4))
            top, left = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
            colour = rng.integers(0, 256, 3)
            if rng.random() < 0.5:
                frame[top : top + h, left : left + w] = colour
            else:
                inside = ((y - top - h / 2) / (h / 2)) ** 2 + ((x - left - w / 2) / (w / 2)) ** 2 <= 1
                frame[inside] = colour
        frame += rng.normal(0, 2, frame.shape)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return np.stack(frames)


def cosine_min(features: torch.Tensor, reference: torch.Tensor) -> float:
    """The lowest row-wise cosine between two ``[N, D]`` feature sets."""
    return float(torch.nn.functional.cosine_similarity(features.float(), reference.float(), dim=-1).min())


Runner = Callable[[ClipImageEncoder, np.ndarray], torch.Tensor]


def _encode(encoder: ClipImageEncoder, frames: np.ndarray) -> torch.Tensor:
    return encoder.encode_snippets(frames)[0]


def measure(encoder: ClipImageEncoder, frames: np.ndarray, candidates: Sequence[str] = CANDIDATES, *,
            repeats: int = 2, run: Runner = _encode) -> list[Measurement]:
    """Time each candidate precision of ``encoder`` on ``frames`` and compare its features with fp32's.

    Each candidate: a one-image warm-up (dropped when over :data:`SLOW_FACTOR` times the fastest warm-up so
    far), then ``repeats`` timed passes over all frames (the first one's features are compared).
    """
    reference: torch.Tensor | None = None
    best_warmup = float("inf")
    out = []
    for precision in candidates:
        try:
            variant = encoder.with_precision(precision)
            t0 = time.perf_counter()
            run(variant, frames[:1])
            warmup = time.perf_counter() - t0
            if warmup > SLOW_FACTOR * best_warmup:
                out.append(Measurement(precision, warmup, None, f"warm-up {warmup / best_warmup:.1f}x the fastest"))
                continue
            best_warmup = min(best_warmup, warmup)
            times, features = [], None
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                got = run(variant, frames)
                times.append((time.perf_counter() - t0) / len(frames))
                features = got if features is None else features
            assert features is not None
            if reference is None:
                reference = features  # fp32 comes first
            out.append(Measurement(precision, statistics.median(times), cosine_min(features, reference)))
        except Exception as exc:  # one precision this CPU or torch build lacks must not stop the worker
            logger.warning("precision probe: %s failed: %s", precision, exc)
            out.append(Measurement(precision, None, None, f"failed: {type(exc).__name__}: {exc}"[:200]))
    return out


class PrecisionCache:
    """Probe results on disk, one JSON file per key (written atomically; unreadable files count as absent)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def get(self, key: str) -> PrecisionChoice | None:
        try:
            data = json.loads(self.path(key).read_text())
            if data.get("version") != CACHE_VERSION or data.get("key") != key:
                return None
            return PrecisionChoice.from_dict(data)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, choice: PrecisionChoice) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.path(choice.key).with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(choice.to_dict(), indent=1))
            tmp.replace(self.path(choice.key))
        except OSError as exc:  # a read-only home: measure again next time
            logger.warning("precision probe: cannot cache the choice in %s: %s", self.directory, exc)


def choose_precision(encoder: ClipImageEncoder, cache: PrecisionCache, *, min_cosine: float = 0.995,
                     frames: int | None = None, measure_fn: Callable[..., list[Measurement]] = measure,
                     cpu: str | None = None) -> PrecisionChoice:
    """The precision for live streams with ``encoder``'s weights: cached for this machine, else measured now.

    Args:
        encoder: The loaded (fp32 or bf16) encoder; the probe runs on its device, which must be a CPU.
        cache: Where choices are kept.
        min_cosine: The cosine to fp32 a faster precision must keep on every frame.
        frames: Frames per pass (default: the encoder's batch, at most 8).
        measure_fn: The measurement (tests inject theirs).
        cpu: The CPU model (default: this machine's).
    """
    count = frames or min(encoder.batch_size, 8)
    key = probe_key(encoder, count, cpu)
    cached = cache.get(key)
    if cached is not None and cached.min_cosine == min_cosine:
        return cached
    t0 = time.perf_counter()
    measurements = measure_fn(encoder, probe_frames(count))
    choice = PrecisionChoice(pick(measurements, min_cosine), "probe", key, tuple(measurements), min_cosine)
    logger.info("precision probe took %.1f s", time.perf_counter() - t0)
    cache.put(choice)
    return choice


def default_cache_dir() -> Path:
    """``~/.cache/dsanet-vad/precision``."""
    return Path.home() / ".cache" / "dsanet-vad" / "precision"


def stream_encoder(encoder: ClipImageEncoder, settings: WorkerSettings) -> tuple[ClipImageEncoder, PrecisionChoice]:
    """The encoder live streams use beside ``encoder`` (the uploads'), and why its precision.

    ``clip_precision`` other than ``auto``, ``stream_precision_probe`` off, or a device that is not a CPU: the
    same encoder (``setting``). Otherwise the probe's choice (cached or measured now), logged.
    """
    if settings.clip_precision != "auto" or not settings.stream_precision_probe or encoder.device.type != "cpu":
        return encoder, PrecisionChoice(encoder.precision, "setting", min_cosine=settings.stream_precision_min_cosine)
    cache = PrecisionCache(settings.precision_cache_dir or default_cache_dir())
    choice = choose_precision(encoder, cache, min_cosine=settings.stream_precision_min_cosine)
    logger.info("live streams with %s run at %s", encoder.name, choice.summary())
    return encoder.with_precision(choice.precision), choice
