"""What a snippet stream yields (:class:`SnippetBatch`) and what it found (:class:`DecodeReport`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workers.video.plan import Snippet


@dataclass(frozen=True)
class SnippetBatch:
    """Consecutive snippets' kept frames, with where they sit in the video.

    Attributes:
        frames: Upright RGB uint8, ``[N, H, W, 3]``, or ``[N, T, H, W, 3]`` for ``frame_pick='all'``.
        snippet_index: Snippet numbers ``j``, ``[N]`` int64.
        frame_index: Source frame index of each kept frame, ``[N]`` or ``[N, T]`` int64 (a padded
            tail repeats its last index).
        n_frames: Frames each snippet covers, ``[N]`` int64 (``T`` except a partial tail).
        start_s: Start time of each snippet, seconds from the start of the stream, ``[N]`` float64.
        end_s: End time of each snippet (end of its last frame), ``[N]`` float64.
    """

    frames: np.ndarray
    snippet_index: np.ndarray
    frame_index: np.ndarray
    n_frames: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray

    def __len__(self) -> int:
        return len(self.snippet_index)

    @classmethod
    def stack(cls, snippets: list[Snippet]) -> SnippetBatch:
        """Stack snippets (all of one plan) into one batch."""
        return cls(
            frames=np.stack([s.frames for s in snippets]),
            snippet_index=np.asarray([s.index for s in snippets], np.int64),
            frame_index=np.stack([s.frame_index for s in snippets]).astype(np.int64, copy=False),
            n_frames=np.asarray([s.n_frames for s in snippets], np.int64),
            start_s=np.asarray([s.start_s for s in snippets], np.float64),
            end_s=np.asarray([s.end_s for s in snippets], np.float64),
        )


@dataclass(frozen=True)
class DecodeReport:
    """What decoding found, for logs and the job result.

    Attributes:
        backend: The backend that finished the pass.
        fallback_reason: Why an earlier backend gave up, or ``None``.
        claimed_frames: Frames the container claims (``None`` when it does not say).
        decoded_frames: Frames actually found (``None`` until the stream is exhausted).
        snippets: Snippets yielded so far.
        bad_packets: Packets the decoder rejected and skipped (PyAV backend).
        stopped_early: Why demuxing ended before end of file (truncated data), or ``None``.
        decode_s: Seconds spent inside the decoder (probe included).
        fallback_from: The backend that gave up (``fallback_reason`` says why), or ``None``.
    """

    backend: str
    fallback_reason: str | None
    claimed_frames: int | None
    decoded_frames: int | None
    snippets: int
    bad_packets: int
    stopped_early: str | None
    decode_s: float
    fallback_from: str | None = None

    @property
    def frame_count_mismatch(self) -> bool:
        """Whether the container's claim and the decoded count are both known and differ."""
        known = self.claimed_frames is not None and self.decoded_frames is not None
        return known and self.claimed_frames != self.decoded_frames
