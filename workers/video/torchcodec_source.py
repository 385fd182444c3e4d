"""The torchcodec backend: PyTorch's maintained FFmpeg decoder, random access, one C++ call per chunk.

torchcodec opens a file in its ``'exact'`` seek mode: a demux pass (a scan, no decoding) indexes every
frame, so ``len(decoder)`` counts the frames really present; ``get_frames_at`` then seeks to the keyframe
before each wanted frame and decodes forward, converting only the wanted frames to RGB. The final chunk
also decodes the very last frame, as the decord backend does, so a file whose index outruns its data
fails here (and ``backend='auto'`` resumes with the next backend) instead of reporting frames that do
not exist. torchcodec does not skip undecodable packets the way the PyAV backend does: any damage it
meets is a :class:`~workers.exceptions.DecoderFailure`.

Frames: torchcodec applies the display matrix's rotation itself (``metadata.rotation``) but not its mirror;
we turn and mirror what it returns into the probe's orientation (for a mirrored matrix it turned the frames
by :func:`~workers.video.plan.rotation_alone`), and rotate when it has nothing to apply but the probe found a
rotation (the legacy ``rotate`` tag). Its RGB conversion is
FFmpeg's, as PyAV's is: on the test videos the frames are bit-identical to PyAV's (the tests allow a
mean absolute difference below 1 grey level, the tolerance between the backends, in case the two
FFmpeg builds differ).

Times: a snippet starts at the time of its first frame, which a ``'middle'`` pick does not decode, so
the times come from a PyAV demux pass over the packets (no decoding; about 20 µs a frame) with the
PyAV backend's rule (see :class:`FrameTimes`); the times torchcodec reports for the frames it decodes
must agree with them, and the frame counts must match, else the backend gives way.

The budget is checked every :data:`CHECK_EVERY` packets of the demux pass and between chunks; opening
(torchcodec's scan) and one ``get_frames_at`` call cannot be interrupted, so a chunk is kept to
``batch_size`` snippets.

Versions: torchcodec 0.12 and later build against torch's stable ABI and pair with torch >= 2.11
(0.10 pairs with 2.10, 0.11 with 2.11 only); 0.17 is what runs here, with torch 2.14.1. The PyPI wheel
for Linux x86_64 is the CUDA 13 build, which loads ``libtorch_cuda``: it pairs with PyPI's torch
(``+cu130``); a CPU-only torch needs torchcodec's ``+cpu`` wheel from download.pytorch.org/whl/cpu.
torchcodec needs FFmpeg's shared libraries (major versions 4 to 8) on the system:
``scripts/ensure-ffmpeg.sh``. When it cannot be imported, the backend is simply unavailable.
"""

from __future__ import annotations

import functools
import importlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import av.error
import numpy as np

from model.exceptions import first_line
from workers.exceptions import DecoderFailure
from workers.video.budget import DecodeBudget
from workers.video.frame_source import FrameSource
from workers.video.plan import Snippet, rotation_alone, snap_time, upright
from workers.video.pyav_io import best_video_stream, open_container

CHECK_EVERY = 256
"""Packets of the demux pass between two checks of the budget."""

TIME_TOLERANCE_S = 1e-6
"""Largest difference allowed between torchcodec's time of a frame and the demuxer's."""


@functools.cache
def import_torchcodec() -> ModuleType | None:
    """Return ``torchcodec.decoders``, or ``None`` when torchcodec is not installed or cannot load.

    The import takes seconds (torchcodec registers its operators with torch), once per process.
    """
    try:
        return importlib.import_module("torchcodec.decoders")
    except Exception:  # no FFmpeg libraries, or a wheel built for another torch: RuntimeError/OSError/ImportError
        return None


@dataclass(frozen=True)
class FrameTimes:
    """Presentation times of a stream's frames, read from its packets.

    The rule is the PyAV backend's: seconds from the stream's start time, a frame ends where the next one
    starts, the last frame ends after its packet's duration (or ``1 / fps`` when it has none), and a time
    within :data:`~workers.video.plan.TIME_SNAP_S` of ``index / fps`` is reported as exactly that.

    Attributes:
        pts: Timestamps in ``time_base`` units, in presentation order, ``[N]`` int64.
        duration: Duration of each frame in ``time_base`` units (0 when unknown), ``[N]`` int64.
        time_base: Seconds per unit.
        start: Timestamp of the start of the stream.
        fps: Average frame rate (for the snap and the last frame's end).
    """

    pts: np.ndarray
    duration: np.ndarray
    time_base: Fraction
    start: int
    fps: float

    @classmethod
    def read(cls, path: Path, fps: float, budget: DecodeBudget) -> FrameTimes:
        """Demux the video stream of ``path`` (no decoding) and collect its frames' times.

        Packets without a timestamp and packets the demuxer marks for discarding (they decode to no
        frame) are left out; a demuxer error ends the pass, keeping the packets before it.
        """
        pts, duration = array("q"), array("q")
        with open_container(path, budget.name) as container:
            stream = best_video_stream(path, container, budget.name)
            try:
                for n, packet in enumerate(container.demux(stream)):
                    if n % CHECK_EVERY == 0:
                        budget.check()
                    if packet.pts is not None and not packet.is_discard:
                        pts.append(packet.pts)
                        duration.append(packet.duration or 0)
            except av.error.FFmpegError:
                pass  # truncated: the decoder's own index stops at the same place, or the counts disagree
            time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1)
            start_time = stream.start_time
        order = np.argsort(np.frombuffer(pts, np.int64), kind="stable")
        pts_sorted = np.frombuffer(pts, np.int64)[order]
        start = start_time if start_time is not None else int(pts_sorted[0]) if len(pts_sorted) else 0
        return cls(pts_sorted, np.frombuffer(duration, np.int64)[order], time_base, start, fps)

    def __len__(self) -> int:
        return len(self.pts)

    def boundary(self, index: int) -> float:
        """Time at which frame ``index`` starts; for ``index == len(self)``, the time the last frame ends."""
        if index < len(self):
            return snap_time(self._seconds(int(self.pts[index])), index, self.fps)
        last = index - 1
        if self.duration[last] > 0:
            end = self._seconds(int(self.pts[last] + self.duration[last]))
        else:
            end = self._seconds(int(self.pts[last])) + 1.0 / self.fps
        return snap_time(end, index, self.fps)

    def absolute_s(self, indices: Sequence[int]) -> np.ndarray:
        """Timestamps of frames in seconds, not shifted by the start: what torchcodec reports."""
        return np.asarray([float(int(self.pts[i]) * self.time_base) for i in indices])

    def _seconds(self, pts: int) -> float:
        return float((pts - self.start) * self.time_base)


class TorchCodecSource(FrameSource):
    """Random-access decoding with torchcodec on the CPU, reading ``chunk`` snippets' kept frames per call."""

    name = "torchcodec"

    def snippets(self, first: int = 0) -> Iterator[Snippet]:
        times = FrameTimes.read(self.path, self.info.fps, self.budget)
        decoder = self._open()
        total = len(decoder)
        if total < 1:
            raise DecoderFailure(self.name, self.path, "it found no video frames")
        if total != len(times):
            reason = f"it indexed {total} frames where the demuxer found {len(times)}"
            raise DecoderFailure(self.name, self.path, reason)
        rotate = self._orientation_to_apply(getattr(decoder.metadata, "rotation", None))
        count = self.plan.snippet_count(total)
        for start in range(first, count, self.chunk):
            self.budget.check()
            yield from self._read_chunk(decoder, range(start, min(start + self.chunk, count)), times, rotate)
        self.decoded_frames = total

    def _open(self) -> Any:
        decoders = import_torchcodec()
        if decoders is None:
            raise DecoderFailure(self.name, self.path, "torchcodec is not installed or cannot load FFmpeg")
        try:
            return decoders.VideoDecoder(
                str(self.path), seek_mode="exact", dimension_order="NHWC", num_ffmpeg_threads=self.threads, device="cpu"
            )
        except Exception as exc:  # torchcodec raises RuntimeError or ValueError depending on where it fails
            raise DecoderFailure(self.name, self.path, f"cannot open it: {first_line(exc)}") from exc

    def _orientation_to_apply(self, ccw: float | None) -> tuple[int, bool]:
        """Clockwise degrees and mirror still to apply to torchcodec's frames (it applies the matrix's rotation)."""
        applied = round(-(ccw or 0.0) / 90.0) % 4 * 90
        rotation, hflip = self.info.rotation, self.info.hflip
        # 0: only the legacy rotate tag says so, which torchcodec does not read
        if applied in (0, rotation_alone(rotation, hflip)):
            return (rotation - applied) % 360, hflip
        reason = f"it rotates the frames by {applied} degrees where the probe found {rotation}"
        raise DecoderFailure(self.name, self.path, reason)

    def _read_chunk(self, decoder: Any, ids: range, times: FrameTimes, rotate: tuple[int, bool]
                    ) -> Iterator[Snippet]:
        spans, indices = self.plan.chunk(ids, len(times))  # may end with the last frame, as a proof; dropped below
        frames = self._get_frames(decoder, indices, times, rotate)
        per = self.plan.frames_per_item
        for n, (j, (first, length)) in enumerate(zip(ids, spans, strict=True)):
            rows = slice(n * per, (n + 1) * per)
            image = frames[rows] if self.plan.all_frames else frames[n]
            kept = np.asarray(indices[rows] if self.plan.all_frames else indices[n], np.int64)
            yield Snippet(j, image, kept, length, times.boundary(first), times.boundary(first + length))

    def _get_frames(self, decoder: Any, indices: Sequence[int], times: FrameTimes, rotate: tuple[int, bool]
                    ) -> np.ndarray:
        try:
            batch = decoder.get_frames_at(list(indices))
            frames, pts_s = batch.data.numpy(), batch.pts_seconds.numpy()
        except Exception as exc:  # see _open
            raise DecoderFailure(self.name, self.path, f"cannot decode frames: {first_line(exc)}") from exc
        expected_s = times.absolute_s(indices)
        if not np.allclose(pts_s, expected_s, rtol=0.0, atol=TIME_TOLERANCE_S):
            worst = int(np.argmax(np.abs(pts_s - expected_s)))
            reason = (f"its frame {indices[worst]} is at {pts_s[worst]:.6f} s where the demuxer puts it at "
                      f"{expected_s[worst]:.6f} s")
            raise DecoderFailure(self.name, self.path, reason)
        if rotate != (0, False):
            frames = np.ascontiguousarray(upright(frames, *rotate))
        expected = (self.info.height, self.info.width)
        if tuple(frames.shape[1:3]) != expected:
            reason = f"it returned {frames.shape[2]}x{frames.shape[1]} frames, expected {expected[1]}x{expected[0]}"
            raise DecoderFailure(self.name, self.path, reason)
        return frames
