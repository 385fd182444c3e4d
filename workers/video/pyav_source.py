"""The PyAV backend of :class:`~workers.video.frame_source.FrameSource`: sequential decoding, the fallback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from fractions import Fraction

import av.error
import numpy as np
from av.video.frame import VideoFrame

from workers.exceptions import DecoderFailure
from workers.video.frame_source import FrameSource
from workers.video.plan import Snippet, SnippetPlan, snap_time, upright
from workers.video.probe import VideoInfo
from workers.video.pyav_io import best_video_stream, decode_frames, open_container


class PyAVSource(FrameSource):
    """Sequential decoding with PyAV: every frame is decoded, only kept frames are converted to RGB."""

    name = "pyav"

    def snippets(self, first: int = 0) -> Iterator[Snippet]:
        with open_container(self.path) as container:
            stream = best_video_stream(self.path, container)
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = self.threads
            assembler = _Assembler(self.info, self.plan, first, stream.time_base, stream.start_time)
            for frame in decode_frames(self.path, container, stream, self.budget, self.health):
                snippet = self._convert_errors(assembler.push, frame)
                if snippet is not None:
                    yield snippet
            tail = self._convert_errors(assembler.finish)
            if tail is not None:
                yield tail
            self.decoded_frames = assembler.seen

    def _convert_errors(self, step: Callable[..., Snippet | None], *args: VideoFrame) -> Snippet | None:
        try:
            return step(*args)
        except (av.error.FFmpegError, ValueError) as exc:
            raise DecoderFailure(self.name, self.path, f"cannot convert a frame to RGB: {exc}") from exc


class _Assembler:
    """Turns frames arriving in presentation order into snippets, holding only what it must keep.

    Memory: the kept RGB frame(s) of the current snippet and of the previous one (held until its end
    time is known), plus, before the pick offset is reached, a reference to the latest decoded frame:
    the clamped pick should the snippet turn out partial.
    """

    def __init__(self, info: VideoInfo, plan: SnippetPlan, first: int, time_base: Fraction | None, start: int | None):
        self.info = info
        self.plan = plan
        self.first = first
        self.time_base = time_base
        self.start_pts = start
        self.seen = 0
        self.done: Snippet | None = None
        self._reset()

    def _reset(self) -> None:
        self.kept: list[np.ndarray] = []
        self.kept_index: list[int] = []
        self.candidate: tuple[int, VideoFrame] | None = None
        self.n = 0
        self.start_s = 0.0
        self.end_s = 0.0

    def push(self, frame: VideoFrame) -> Snippet | None:
        """Take the next frame; return the snippet that is now complete, if any.

        A full snippet is held back until the next frame arrives, because its end time is that
        frame's start time (exact for variable frame rate, where frame durations are unreliable).
        """
        i = self.seen
        self.seen += 1
        if self.start_pts is None:
            self.start_pts = frame.pts
        index, k = divmod(i, self.plan.snippet_frames)
        released = None
        if k == 0 and self.done is not None:
            released = replace(self.done, end_s=snap_time(self._seconds(frame.pts), i, self.info.fps))
            self.done = None
        if index < self.first:
            return released
        if k == 0:
            self.start_s = snap_time(self._seconds(frame.pts), i, self.info.fps)
        self.end_s = snap_time(self._end_seconds(frame), i + 1, self.info.fps)
        self.n += 1
        if self.plan.offset is None or k == self.plan.offset:
            self.kept.append(self._rgb(frame))
            self.kept_index.append(i)
        elif k < self.plan.offset:
            self.candidate = (i, frame)
        if k == self.plan.snippet_frames - 1:
            self.done = self._emit(index)
        return released

    def finish(self) -> Snippet | None:
        """At end of stream, return the last snippet: a held-back full one, or the partial tail if kept."""
        if self.done is not None:
            return self.done
        if self.n == 0 or not self.plan.keep_tail:
            return None
        if not self.kept and self.candidate is not None:
            i, frame = self.candidate
            self.kept, self.kept_index = [self._rgb(frame)], [i]
        return self._emit((self.seen - 1) // self.plan.snippet_frames)

    def _emit(self, index: int) -> Snippet:
        if self.plan.all_frames:
            pad = self.plan.snippet_frames - len(self.kept)
            image = np.stack(self.kept + [self.kept[-1]] * pad)
            kept_index = np.asarray(self.kept_index + [self.kept_index[-1]] * pad, np.int64)
        else:
            image, kept_index = self.kept[0], np.asarray(self.kept_index[0], np.int64)
        snippet = Snippet(index, image, kept_index, self.n, self.start_s, self.end_s)
        self._reset()
        return snippet

    def _rgb(self, frame: VideoFrame) -> np.ndarray:
        width, height = self.info.stored_size
        rgb = frame.to_ndarray(format="rgb24", width=width, height=height)
        return upright(rgb, self.info.rotation, self.info.hflip)

    def _seconds(self, pts: int | None) -> float | None:
        if pts is None or self.start_pts is None or self.time_base is None:
            return None
        return float((pts - self.start_pts) * self.time_base)

    def _end_seconds(self, frame: VideoFrame) -> float | None:
        if frame.pts is None:
            return None
        if frame.duration:
            return self._seconds(frame.pts + frame.duration)
        start = self._seconds(frame.pts)
        return None if start is None else start + 1.0 / self.info.fps
