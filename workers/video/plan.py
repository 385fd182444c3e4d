"""Which frames make a snippet, which of them are kept, and what times a snippet spans.

Snippet ``j`` covers frames ``[T*j, T*j + T)`` with ``T = snippet_frames`` (16 in the DSANet protocol,
spec B). The last snippet may be partial; it is kept when ``keep_tail`` is true, so a video of ``F``
frames gives ``ceil(F / T)`` snippets (``floor(F / T)`` without the tail).

Frame pick: ``'first'`` is offset 0, ``'middle'`` offset ``T // 2`` (frame 8 of 0..15), an ``int`` is that
offset. In a partial tail the offset is clamped to the last frame it has: a streaming decoder learns
that a snippet is partial only at end of file, and the clamp needs nothing but the latest frame.
``'all'`` keeps every frame; a partial tail is padded by repeating its last frame (``n_frames`` says
how many are real).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

FramePick = Literal["first", "middle", "all"] | int
"""Which frame(s) of a snippet to keep: a named position, an offset in ``[0, snippet_frames)``, or all."""

TIME_SNAP_S = 1e-3
"""A frame time within this distance of ``index / fps`` is reported as exactly ``index / fps``."""


@dataclass(frozen=True)
class SnippetPlan:
    """How frames are grouped into snippets and which are kept.

    Attributes:
        snippet_frames: Frames per snippet (``T``).
        offset: Offset of the kept frame inside a snippet; ``None`` keeps all ``T`` frames.
        keep_tail: Whether a final partial snippet is kept.
    """

    snippet_frames: int = 16
    offset: int | None = 8
    keep_tail: bool = True

    @classmethod
    def create(cls, snippet_frames: int = 16, frame_pick: FramePick = "middle", keep_tail: bool = True) -> SnippetPlan:
        """Validate the user-facing options and build a plan.

        Raises:
            ValueError: ``snippet_frames`` is not positive, or ``frame_pick`` is unknown or out of range.
        """
        if isinstance(snippet_frames, bool) or not isinstance(snippet_frames, int) or snippet_frames < 1:
            raise ValueError(f"snippet_frames must be a positive int, got {snippet_frames!r}")
        named = {"first": 0, "middle": snippet_frames // 2, "all": None}
        if isinstance(frame_pick, str) and frame_pick in named:
            return cls(snippet_frames, named[frame_pick], keep_tail)
        if isinstance(frame_pick, int) and not isinstance(frame_pick, bool) and 0 <= frame_pick < snippet_frames:
            return cls(snippet_frames, frame_pick, keep_tail)
        message = f"frame_pick must be 'first', 'middle', 'all' or an int in [0, {snippet_frames}), got {frame_pick!r}"
        raise ValueError(message)

    @property
    def all_frames(self) -> bool:
        """Whether every frame of a snippet is kept."""
        return self.offset is None

    @property
    def frames_per_item(self) -> int:
        """Frames kept per snippet."""
        return self.snippet_frames if self.offset is None else 1

    def snippet_count(self, total_frames: int) -> int:
        """Number of snippets a video of ``total_frames`` frames yields."""
        full, rest = divmod(total_frames, self.snippet_frames)
        return full + int(self.keep_tail and rest > 0)

    def span(self, index: int, total_frames: int) -> tuple[int, int]:
        """``(first frame, number of frames)`` of snippet ``index`` in a video of ``total_frames`` frames."""
        first = index * self.snippet_frames
        return first, min(self.snippet_frames, total_frames - first)

    def kept_offsets(self, n_frames: int) -> list[int]:
        """Offsets, inside a snippet of ``n_frames`` frames, of the frames kept (padded for ``'all'``)."""
        if self.offset is None:
            return [min(k, n_frames - 1) for k in range(self.snippet_frames)]
        return [min(self.offset, n_frames - 1)]

    def chunk(self, snippets: range, total_frames: int) -> tuple[list[tuple[int, int]], list[int]]:
        """What a random-access backend reads for consecutive ``snippets``: their spans and kept frames.

        Returns:
            The ``(first frame, number of frames)`` of each snippet, and the source indices of the kept
            frames, ``frames_per_item`` per snippet. When ``snippets`` ends with the video's last snippet,
            the index of the last frame follows if it is not already the last kept one: decoding it
            proves that the indexed frames exist (a file whose index outruns its data fails there).
            The caller drops that frame.
        """
        spans = [self.span(j, total_frames) for j in snippets]
        indices = [first + k for first, n in spans for k in self.kept_offsets(n)]
        if snippets[-1] == self.snippet_count(total_frames) - 1 and indices[-1] != total_frames - 1:
            indices.append(total_frames - 1)
        return spans, indices


@dataclass(frozen=True)
class Snippet:
    """One snippet's kept frame(s) and the span of time it covers.

    Attributes:
        index: Snippet number ``j``.
        frames: Upright RGB uint8, ``[H, W, 3]`` (one kept frame) or ``[T, H, W, 3]`` (``'all'``).
        frame_index: Source frame index of each kept frame, ``[]`` or ``[T]``.
        n_frames: Frames the snippet covers (``T`` except in a partial tail).
        start_s: Presentation time of its first frame, from the start of the stream.
        end_s: Presentation time at which its last frame ends.
    """

    index: int
    frames: np.ndarray
    frame_index: np.ndarray
    n_frames: int
    start_s: float
    end_s: float


def snap_time(seconds: float | None, index: int, fps: float) -> float:
    """Time of frame boundary ``index``: its timestamp, or ``index / fps`` when they (nearly) agree.

    Constant-frame-rate streams thus get exact ``index / fps`` times whatever their time base (and
    decord's float32 timestamps); variable-frame-rate streams keep their real timestamps.

    Args:
        seconds: Timestamp from the stream, ``None`` when it has none.
        index: Frame index (``i`` for the start of frame ``i``, ``i + 1`` for its end).
        fps: Average frame rate.
    """
    nominal = index / fps
    if seconds is None or abs(seconds - nominal) <= TIME_SNAP_S:
        return nominal
    return seconds


def upright(image: np.ndarray, rotation: int, hflip: bool = False) -> np.ndarray:
    """Rotate ``[..., H, W, C]`` frames clockwise by ``rotation`` degrees (a multiple of 90), then mirror them
    left-right when ``hflip``: the orientation a display matrix describes (FFmpeg's ``av_display_matrix_flip``
    mirrors the rotated frame)."""
    k = (rotation // 90) % 4
    turned = image if k == 0 else np.rot90(image, k=-k, axes=(-3, -2))
    return turned[..., ::-1, :] if hflip else turned


def rotation_alone(rotation: int, hflip: bool) -> int:
    """The clockwise rotation FFmpeg's ``av_display_rotation_get`` reads from the display matrix of ``rotation``
    then ``hflip``: what a decoder that applies the matrix's rotation and ignores its mirror (torchcodec, decord)
    turns the frames by. The mirror negates the matrix's first column, which that angle reads as 180 - rotation."""
    return (180 - rotation) % 360 if hflip else rotation
