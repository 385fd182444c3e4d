"""Read what a video file claims about itself, and check that at least its first frame decodes."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from workers.exceptions import VideoError
from workers.video.budget import DecodeBudget
from workers.video.pyav_io import DecodeHealth, best_video_stream, decode_frames, open_container, orientation

MAX_PIXELS = 8192 * 8192
"""Largest frame (width × height) accepted; one RGB frame at this size is 192 MiB."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says about itself, plus what decoding its first frame showed.

    Attributes:
        path: The file, as given.
        container: FFmpeg's name of the container format (e.g. ``"mov,mp4,m4a,3gp,3g2,mj2"``).
        codec: Video codec name (e.g. ``"h264"``).
        fps: Average frame rate in frames per second (for variable frame rate, frames / duration).
        frame_count: Frames the container claims (``None`` when it does not say). Containers lie:
            :class:`~workers.video.decode.SnippetStream` reports the count actually decoded.
        duration_s: Claimed duration of the video stream (of the file when the stream has none).
        width: Width of the upright frame, i.e. of the frames the decoder yields (after rotation).
        height: Height of the upright frame.
        rotation: Clockwise rotation in degrees (0, 90, 180, 270) applied to the stored frames to make
            them upright, from the display matrix or the legacy ``rotate`` tag.
        pix_fmt: Pixel format of the decoded frames (e.g. ``"yuv420p"``).
        has_audio: Whether the file also has an audio stream (not used by the pipeline).
        hflip: Whether the display matrix also mirrors the frames left-right, after the rotation (EXIF
            orientations 2, 4, 5 and 7).
    """

    path: str
    container: str
    codec: str
    fps: float
    frame_count: int | None
    duration_s: float | None
    width: int
    height: int
    rotation: int
    pix_fmt: str | None
    has_audio: bool
    hflip: bool = False

    @property
    def stored_size(self) -> tuple[int, int]:
        """``(width, height)`` of the frames as stored, before rotation."""
        if self.rotation in (90, 270):
            return self.height, self.width
        return self.width, self.height

    @property
    def estimated_frames(self) -> int | None:
        """Claimed frame count, else duration × fps; a progress estimate, not a fact."""
        if self.frame_count is not None:
            return self.frame_count
        if self.duration_s is not None:
            return round(self.duration_s * self.fps)
        return None


def probe(
    path: str | Path,
    *,
    timeout_s: float | None = None,
    stop: threading.Event | None = None,
    max_pixels: int = MAX_PIXELS,
    name: str | None = None,
) -> VideoInfo:
    """Describe a video file and check that its first frame decodes.

    Reads the container header and decodes until the first frame (which carries the rotation side
    data and the true frame size); it does not decode the whole file.

    Args:
        path: The video file.
        timeout_s: Seconds allowed for probing; ``None`` means no limit.
        stop: When set by another thread, probing stops with :class:`~workers.exceptions.DecodeCancelled`.
        max_pixels: Largest accepted width × height.
        name: What error messages call the file (the name its user knows); the file's own name when ``None``.

    Returns:
        The video's description.

    Raises:
        VideoError: Not a video, audio-only, no decodable frame, no frame rate, or frames too large.
        DecodeTimeout: Probing took more than ``timeout_s``.
    """
    budget = DecodeBudget(path, timeout_s, stop, name=name)
    with budget.running():
        return probe_within(path, budget, max_pixels)


def probe_within(path: str | Path, budget: DecodeBudget, max_pixels: int = MAX_PIXELS) -> VideoInfo:
    """:func:`probe` charging its time to a budget the caller also uses for decoding (errors name ``budget.name``)."""
    path = Path(path)
    with open_container(path, budget.name) as container:
        stream = best_video_stream(path, container, budget.name)
        first = _first_frame(path, container, stream, budget)
        rotation, hflip = orientation(first, stream)
        width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        if width * height > max_pixels:
            reason = f"its frames are {width}x{height}, more than the {max_pixels} pixels this worker accepts"
            raise VideoError(path, reason, "Downscale the video before uploading it", name=budget.name)
        return VideoInfo(
            path=str(path),
            container=container.format.name,
            codec=stream.codec_context.name,
            fps=_frame_rate(path, stream, budget.name),
            frame_count=stream.frames or None,
            duration_s=_duration_s(container, stream),
            width=width,
            height=height,
            rotation=rotation,
            pix_fmt=first.format.name,
            has_audio=bool(container.streams.audio),
            hflip=hflip,
        )


def _first_frame(path: Path, container: InputContainer, stream: VideoStream, budget: DecodeBudget) -> VideoFrame:
    health = DecodeHealth()
    for frame in decode_frames(path, container, stream, budget, health):
        return frame
    reason = "no frame could be decoded (the video stream is empty, truncated or corrupt)"
    if health.bad_packets:
        reason = f"no frame could be decoded ({health.bad_packets} packets were rejected by the decoder)"
    raise VideoError(path, reason, "Check that the upload finished, or re-encode the file", name=budget.name)


def _frame_rate(path: Path, stream: VideoStream, name: str) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    hint = "Re-encode it with a fixed frame rate (ffmpeg -r 30)"
    raise VideoError(path, "its frame rate cannot be determined", hint, name=name)


def _duration_s(container: InputContainer, stream: VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * Fraction(stream.time_base))
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None
