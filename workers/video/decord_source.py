"""The decord backend: random access, one batched ``get_batch`` per chunk of snippets.

decord indexes every packet when it opens a file (a demux pass, a few dozen bytes per frame), then
seeks to the keyframe before each wanted frame and decodes forward. ``len(reader)`` is the number of
video packets actually present, which is already a better frame count than the container's claim;
the final chunk also decodes the very last frame, so a file whose index outruns its data fails here
(and ``backend='auto'`` resumes with PyAV) instead of silently reporting frames that do not exist.

Known limits of decord 0.6, handled by the fallback: frames 16 pixels wide or narrower fail with
"DECORDArrayCopyFromTo: The size must exactly match"; audio-only and truncated files fail to open.
decord applies the rotation metadata itself (``rotate`` tag, then display matrix, like FFmpeg) but not a
display matrix's mirror; for 90/270 degrees the frame shape shows whether it did, and we rotate when it did
not (for 180 the shape cannot tell; decord reads the same metadata as the probe, and the tests check all
three angles). For a mirrored matrix it turned the frames by :func:`~workers.video.plan.rotation_alone`, and
we turn and mirror them into the probe's orientation.

The budget is checked between chunks; opening (the demux pass) and one ``get_batch`` call cannot be
interrupted, so a chunk is kept to ``batch_size`` snippets.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from model.exceptions import first_line
from workers.exceptions import DecoderFailure
from workers.video.frame_source import FrameSource
from workers.video.plan import Snippet, rotation_alone, snap_time, upright


@functools.cache
def import_decord() -> ModuleType | None:
    """Return the decord module, or ``None`` when it is not installed or fails to load."""
    try:
        return importlib.import_module("decord")
    except Exception:  # a broken native build raises OSError/ImportError/RuntimeError alike
        return None


class DecordSource(FrameSource):
    """Random-access decoding with decord, reading ``chunk`` snippets' kept frames per call."""

    name = "decord"

    def snippets(self, first: int = 0) -> Iterator[Snippet]:
        reader = self._open()
        total = len(reader)
        if total < 1:
            raise DecoderFailure(self.name, self.path, "it found no video frames")
        count = self.plan.snippet_count(total)
        for start in range(first, count, self.chunk):
            self.budget.check()
            yield from self._read_chunk(reader, range(start, min(start + self.chunk, count)), total)
        self.decoded_frames = total

    def _open(self) -> Any:
        decord = import_decord()
        if decord is None:
            raise DecoderFailure(self.name, self.path, "decord is not installed")
        try:
            return decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=self.threads)
        except Exception as exc:  # decord raises DECORDError or RuntimeError depending on where it fails
            raise DecoderFailure(self.name, self.path, f"cannot open it: {first_line(exc)}") from exc

    def _read_chunk(self, reader: Any, ids: range, total: int) -> Iterator[Snippet]:
        spans, indices = self.plan.chunk(ids, total)  # may end with the last frame, as a proof; dropped below
        frames = self._get_batch(reader, indices)
        # a snippet ends where the next one starts; the last one where its last frame ends
        bounds = [i for first, n in spans for i in (first, min(first + n, total - 1))]
        times = self._timestamps(reader, bounds)
        per = self.plan.frames_per_item
        for n, (j, (first, length)) in enumerate(zip(ids, spans, strict=True)):
            rows = slice(n * per, (n + 1) * per)
            image = frames[rows] if self.plan.all_frames else frames[n]
            kept = np.asarray(indices[rows] if self.plan.all_frames else indices[n], np.int64)
            start_s = snap_time(times[2 * n][0], first, self.info.fps)
            end_s = times[2 * n + 1][0] if first + length < total else self._frame_end(*times[2 * n + 1])
            yield Snippet(j, image, kept, length, start_s, snap_time(end_s, first + length, self.info.fps))

    def _frame_end(self, start_s: float, stop_s: float) -> float:
        return stop_s if stop_s > start_s else start_s + 1.0 / self.info.fps

    def _get_batch(self, reader: Any, indices: Sequence[int]) -> np.ndarray:
        try:
            frames = reader.get_batch(list(indices)).asnumpy()
        except Exception as exc:  # see _open
            raise DecoderFailure(self.name, self.path, f"cannot decode frames: {first_line(exc)}") from exc
        return self._upright(frames)

    def _timestamps(self, reader: Any, indices: Sequence[int]) -> list[tuple[float, float]]:
        try:
            table = np.asarray(reader.get_frame_timestamp(list(indices)), np.float64).reshape(-1, 2)
        except Exception as exc:  # see _open
            raise DecoderFailure(self.name, self.path, f"cannot read timestamps: {first_line(exc)}") from exc
        # decord keeps timestamps as float32 seconds; round its noise away (precision ~0.1 ms after an hour)
        return [(round(float(a), 6), round(float(b), 6)) for a, b in table]

    def _upright(self, frames: np.ndarray) -> np.ndarray:
        expected = (self.info.height, self.info.width)
        got = tuple(frames.shape[1:3])
        rotation, hflip = self.info.rotation, self.info.hflip
        if got == expected:  # decord turned the frames by the matrix's rotation; the mirror is ours to apply
            rest = (rotation - rotation_alone(rotation, hflip)) % 360
            return np.ascontiguousarray(upright(frames, rest, hflip)) if (rest, hflip) != (0, False) else frames
        if rotation in (90, 270) and got == expected[::-1]:
            return np.ascontiguousarray(upright(frames, rotation, hflip))
        raise DecoderFailure(
            self.name, self.path, f"it returned {got[1]}x{got[0]} frames, expected {expected[1]}x{expected[0]}"
        )
