"""Write synthetic test videos with known content, timing and events, using PyAV.

Used by the tests (odd sizes, variable frame rate, rotation metadata, audio-only files) and by the
``vad demo`` command, which trains on such videos. Everything is deterministic given the seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.container import OutputContainer
from av.video.stream import VideoStream

from workers.synthetic.scene import EVENT_CLASSES, NORMAL, Event, SceneRenderer


@dataclass(frozen=True)
class SyntheticVideo:
    """Ground truth of a generated video.

    Attributes:
        path: The file written.
        fps: Nominal frame rate (for variable frame rate, the average the durations were drawn around).
        frame_count: Frames written.
        width: Width of the upright picture (what a decoder honouring rotation yields).
        height: Height of the upright picture.
        duration_s: End time of the last frame.
        events: Injected events.
        frame_times_s: Presentation time of every frame.
        rotation: Clockwise rotation (degrees) a player must apply to the stored frames.
        codec: Encoder used (``"libx264"`` or ``"mpeg4"``).
        vfr: Whether frame durations vary.
    """

    path: Path
    fps: float
    frame_count: int
    width: int
    height: int
    duration_s: float
    events: tuple[Event, ...]
    frame_times_s: tuple[float, ...]
    rotation: int
    codec: str
    vfr: bool

    def frame_labels(self) -> list[str]:
        """Event class (or ``"normal"``) of every frame, from its presentation time."""
        return [_label(self.events, t) for t in self.frame_times_s]

    def snippet_labels(self, snippet_frames: int = 16) -> list[str]:
        """Label of every snippet (tail included): the most frequent event class among its frames, else normal."""
        labels = self.frame_labels()
        out = []
        for start in range(0, len(labels), snippet_frames):
            classes = [c for c in labels[start : start + snippet_frames] if c != NORMAL]
            out.append(max(set(classes), key=classes.count) if classes else NORMAL)
        return out


def default_codec() -> str:
    """``"libx264"`` when this PyAV build has it, else ``"mpeg4"``."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def make_video(
    path: str | Path,
    *,
    frames: int | None = None,
    duration_s: float = 4.0,
    fps: float = 25.0,
    size: tuple[int, int] = (128, 96),
    seed: int = 0,
    events: Sequence[Event | tuple[str, float, float]] = (),
    vfr: bool = False,
    rotation: int = 0,
    codec: str | None = None,
    noise: float = 2.0,
    crf: int = 23,
    faststart: bool = False,
    still: Sequence[tuple[float, float]] = (),
) -> SyntheticVideo:
    """Render and encode a synthetic video.

    Args:
        path: Output file; the extension picks the container (``.mp4``, ``.mkv``, ...).
        frames: Number of frames; when ``None``, ``round(duration_s * fps)``.
        duration_s: Length when ``frames`` is not given.
        fps: Frame rate (the average one when ``vfr``).
        size: ``(width, height)`` of the upright picture; odd sizes down to 1x1 work (H.264 then uses 4:4:4).
        seed: Seed of everything random (texture, motion, noise, flicker, frame durations).
        events: Events to inject, as :class:`Event` or ``(class_name, start_s, end_s)``.
        vfr: Draw each frame's duration from {0.5, 1, 1.5} / fps instead of a constant 1 / fps.
        rotation: Clockwise degrees (0, 90, 180, 270) a player must rotate the stored frames by; the
            frames are stored rotated the other way and the display matrix says so, like a phone video.
        codec: Encoder; ``None`` picks :func:`default_codec`.
        noise: Sensor-noise amplitude in grey levels.
        crf: H.264 quality (lower is better); ignored by mpeg4.
        faststart: Put the MP4 index before the data, as streaming sites do; a truncated copy then
            still opens, and its index claims frames that are no longer there.
        still: Intervals ``(start_s, end_s)`` of static scene (the normal motion stops; noise and events go on).

    Returns:
        The ground truth of the written file.

    Raises:
        ValueError: Bad size, frame count, rotation, or event.
    """
    width, height = size
    count = frames if frames is not None else round(duration_s * fps)
    if count < 1 or fps <= 0 or rotation % 90 or width < 1 or height < 1:
        raise ValueError(
            f"need frames >= 1, fps > 0, rotation a multiple of 90 and size >= 1x1; got "
            f"frames={count}, fps={fps}, rotation={rotation}, size={size}"
        )
    rotation %= 360
    events_t = tuple(e if isinstance(e, Event) else Event(*e) for e in events)
    codec = codec or default_codec()
    timeline = _Timeline.create(count, fps, vfr, seed)
    renderer = SceneRenderer(width, height, seed, events_t, noise, still)
    _encode(Path(path), renderer, timeline, rotation, codec, crf, faststart)
    times = tuple(float(p * timeline.time_base) for p in timeline.pts)
    end = float((timeline.pts[-1] + timeline.durations[-1]) * timeline.time_base)
    return SyntheticVideo(Path(path), fps, count, width, height, end, events_t, times, rotation, codec, vfr)


def random_events(
    duration_s: float,
    count: int,
    seed: int = 0,
    classes: Sequence[str] = EVENT_CLASSES,
    length_s: tuple[float, float] = (0.5, 2.0),
) -> tuple[Event, ...]:
    """Draw ``count`` non-overlapping events at random times inside ``[0, duration_s)``.

    The video is cut into ``count`` equal slots and each event placed at random within its slot, so
    events never overlap; an event is shortened when its slot is too short.
    """
    rng = np.random.default_rng(seed)
    slot = duration_s / max(count, 1)
    out = []
    for k in range(count):
        length = min(float(rng.uniform(*length_s)), slot * 0.9)
        start = k * slot + float(rng.uniform(0.0, slot - length))
        out.append(Event(str(rng.choice(list(classes))), round(start, 3), round(start + length, 3)))
    return tuple(out)


def make_audio_only(path: str | Path, duration_s: float = 1.0, sample_rate: int = 16_000) -> Path:
    """Write a file with an AAC tone and no video stream (``.mp4`` or ``.m4a``)."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=sample_rate, layout="mono")
        samples = np.sin(2 * np.pi * 440 * np.arange(int(duration_s * sample_rate)) / sample_rate) * 0.3
        for start in range(0, len(samples), 1024):
            chunk = samples[start : start + 1024].astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = sample_rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def make_empty_video(path: str | Path, size: tuple[int, int] = (64, 48)) -> Path:
    """Write a container that declares a video stream but holds no frame."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = _add_video_stream(container, default_codec(), Fraction(25), {})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        container.start_encoding()
    return path


def _label(events: Sequence[Event], t: float) -> str:
    return next((e.class_name for e in events if e.covers(t)), NORMAL)


@dataclass(frozen=True)
class _Timeline:
    """Frame timestamps in an exact integer time base."""

    rate: Fraction
    time_base: Fraction
    pts: tuple[int, ...]
    durations: tuple[int, ...]

    @classmethod
    def create(cls, count: int, fps: float, vfr: bool, seed: int) -> _Timeline:
        rate = Fraction(fps).limit_denominator(1001)
        if not vfr:
            return cls(rate, 1 / rate, tuple(range(count)), (1,) * count)
        # half-frame ticks keep every time exact and the time base small enough for mpeg4
        durations = np.random.default_rng((seed, 1)).choice([1, 2, 3], count)
        starts = np.concatenate([[0], np.cumsum(durations)[:-1]])
        return cls(rate, 1 / (2 * rate), tuple(int(p) for p in starts), tuple(int(d) for d in durations))


def _add_video_stream(container: OutputContainer, codec: str, rate: Fraction, options: dict[str, str]) -> VideoStream:
    stream = container.add_stream(codec, rate=rate, options=options)
    if not isinstance(stream, VideoStream):
        raise ValueError(f"{codec!r} is not a video encoder")
    return stream


def _encode(
    path: Path, renderer: SceneRenderer, timeline: _Timeline, rotation: int, codec: str, crf: int, faststart: bool
) -> None:
    swap = rotation in (90, 270)
    width, height = (renderer.height, renderer.width) if swap else (renderer.width, renderer.height)
    odd = width % 2 or height % 2
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as container:
        # one encoder thread: the least CPU at every size measured (a demo video, 96x72: 0.21 s instead of 0.34 s on
        # 2 cores; 1280x720: 15 % less) and the same frames; more threads only shorten the wall time of big frames
        options = {"crf": str(crf), "preset": "veryfast", "threads": "1"} if codec == "libx264" else {}
        stream = _add_video_stream(container, codec, timeline.rate, options)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv444p" if odd and codec == "libx264" else "yuv420p"
        stream.codec_context.time_base = timeline.time_base
        if rotation:
            stream.set_display_rotation(-rotation)  # PyAV takes counter-clockwise degrees
        for index, (pts, duration) in enumerate(zip(timeline.pts, timeline.durations, strict=True)):
            image = renderer.render(index, float(pts * timeline.time_base))
            stored = np.ascontiguousarray(np.rot90(image, k=rotation // 90))  # upright turned back, as stored
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            frame.pts, frame.duration, frame.time_base = pts, duration, timeline.time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
