"""PyAV plumbing shared by probing and the PyAV backend: opening, tolerant decoding, rotation.

Decoding is tolerant the way the ffmpeg command line is: a packet the decoder rejects is counted and
skipped, and a demuxer error other than end-of-file ends the stream early (a truncated upload keeps
the frames before the cut). Only a run of :data:`MAX_CONSECUTIVE_ERRORS` bad packets rejects the file.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from model.exceptions import first_line
from workers.exceptions import VideoError
from workers.video.budget import DecodeBudget

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_ERRORS = 200
"""Undecodable packets in a row after which a stream is declared corrupt rather than damaged."""

_REENCODE_HINT = "Check that the upload finished, or re-encode it (e.g. ffmpeg -i in.ext -c:v libx264 out.mp4)"


@dataclass
class DecodeHealth:
    """What went wrong, short of failing, while decoding a stream."""

    bad_packets: int = 0
    stopped_early: str | None = None


def open_container(path: str | Path, name: str | None = None) -> InputContainer:
    """Open a media file for reading and turn every failure into a readable :class:`VideoError`.

    Args:
        path: The file to open.
        name: What the errors call it (see :class:`~workers.video.budget.DecodeBudget`).

    Returns:
        The open PyAV input container; close it (``with`` block) when done.

    Raises:
        VideoError: The file is missing, unreadable or not a media container.
    """
    path = Path(path)
    if not path.is_file():
        reason = "it is a directory" if path.is_dir() else "the file does not exist"
        raise VideoError(path, reason, "Check the path the job was given", name=name)
    try:
        return av.open(str(path), mode="r", metadata_errors="replace")
    except PermissionError as exc:
        reason, hint = "the worker may not read it (permission denied)", "Fix the file's permissions"
        raise VideoError(path, reason, hint, name=name) from exc
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        reason = f"it is not a video container FFmpeg can read ({first_line(exc)})"
        hint = "Upload a common video format such as MP4 (H.264), WebM or MKV"
        raise VideoError(path, reason, hint, name=name) from exc


def best_video_stream(path: Path, container: InputContainer, name: str | None = None) -> VideoStream:
    """Return the stream FFmpeg picks as the main video (the same one decord picks).

    Raises:
        VideoError: The file has no video stream, or no decoder for it.
    """
    stream = container.streams.best("video")
    if not isinstance(stream, VideoStream):
        kind = "it is audio-only" if container.streams.audio else "it contains no video stream"
        raise VideoError(path, kind, "Upload a file with a video track", name=name)
    if stream.codec_context is None:
        reason = "its video codec is not supported by this worker's FFmpeg"
        raise VideoError(path, reason, _REENCODE_HINT, name=name)
    return stream


def decode_frames(
    path: Path, container: InputContainer, stream: VideoStream, budget: DecodeBudget, health: DecodeHealth
) -> Iterator[VideoFrame]:
    """Decode ``stream`` sequentially, in presentation order, skipping packets the decoder rejects.

    Args:
        path: The file (its name for error messages is ``budget.name``).
        container: Its open container.
        stream: The video stream to decode; other streams are not even demuxed.
        budget: Checked before every packet.
        health: Updated with the number of rejected packets and why decoding stopped early, if it did.

    Yields:
        Decoded frames.

    Raises:
        VideoError: :data:`MAX_CONSECUTIVE_ERRORS` packets in a row could not be decoded.
    """
    run = 0
    packets = container.demux(stream)
    while True:
        budget.check()
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:  # truncated or damaged container: keep what came before
            health.stopped_early = f"demuxer error: {first_line(exc)}"
            logger.warning("%s: stopping at a demuxer error, keeping the frames so far (%s)", path.name,
                           first_line(exc))
            yield from _flush(stream)
            return
        try:
            frames = stream.decode(packet)
        except av.error.FFmpegError as exc:
            health.bad_packets += 1
            run += 1
            if run >= MAX_CONSECUTIVE_ERRORS:
                reason = f"its video data is corrupt ({run} packets in a row could not be decoded: {first_line(exc)})"
                raise VideoError(path, reason, _REENCODE_HINT, name=budget.name) from exc
            continue
        run = 0
        yield from frames


def _flush(stream: VideoStream) -> list[VideoFrame]:
    """Drain the frames still buffered in the decoder; a decoder in a bad state gives none."""
    try:
        return stream.decode(None)
    except av.error.FFmpegError:
        return []


def orientation(frame: VideoFrame, stream: VideoStream) -> tuple[int, bool]:
    """Clockwise rotation, in degrees (0, 90, 180, 270), and mirror that make the stored frames upright.

    The display matrix (side data) wins; the legacy ``rotate`` tag (a rotation, never a mirror) is the fallback.
    Both use the convention of FFmpeg's autorotate (and decord's): rotate the stored image clockwise by this
    angle, then mirror it left-right when the matrix says so (:func:`matrix_orientation`). Angles that are not
    multiples of 90 are rounded to the nearest one.
    """
    matrix = _display_matrix(frame)
    found = matrix_orientation(matrix) if matrix is not None else None
    if found is None:  # no matrix PyAV can hand over: its angle alone
        ccw = float(frame.rotation or 0.0)
        found = (round(-ccw / 90.0) % 4 * 90, False) if math.isfinite(ccw) else (0, False)
    if found != (0, False):
        return found
    return round(_rotate_tag(stream) / 90.0) % 4 * 90, False


def matrix_orientation(matrix: Sequence[int]) -> tuple[int, bool] | None:
    """The clockwise rotation and mirror of a display matrix (9 int32, FFmpeg's layout), ``None`` if degenerate.

    A matrix maps a stored pixel ``(p, q)`` to ``(a*p + c*q, b*p + d*q)`` (``a, b, c, d`` = entries 0, 1, 3, 4).
    A negative determinant mirrors: FFmpeg writes a mirrored orientation as a rotation whose first column
    ``av_display_matrix_flip`` negated, so the angle is read, as ``av_display_rotation_get`` reads it, once that
    negation is undone. Reading it without (what ``frame.rotation`` does) turns a mirror into a 180-degree turn.
    """
    a, b, c, d = (float(matrix[i]) for i in (0, 1, 3, 4))
    determinant = a * d - b * c
    if not math.isfinite(determinant) or determinant == 0:
        return None
    hflip = determinant < 0
    clockwise = math.degrees(math.atan2(b, -a if hflip else a))
    return round(clockwise / 90.0) % 4 * 90, hflip


def _display_matrix(frame: VideoFrame) -> list[int] | None:
    try:
        data: Any = frame.side_data.get("DISPLAYMATRIX")
    except (AttributeError, KeyError, TypeError, ValueError):  # a PyAV without this side-data API
        return None
    if data is None:
        return None
    values = np.frombuffer(bytes(data), dtype=np.int32)  # FFmpeg's int32_t[9], in the machine's byte order
    return values.tolist() if values.size == 9 else None


def _rotate_tag(stream: VideoStream) -> float:
    tag = stream.metadata.get("rotate", "0")
    try:
        value = float(tag)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) else 0.0


