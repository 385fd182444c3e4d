"""The :class:`FrameSource` interface every decoding backend implements (PyAV, decord, torchcodec)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from workers.video.budget import DecodeBudget
from workers.video.plan import Snippet, SnippetPlan
from workers.video.probe import VideoInfo
from workers.video.pyav_io import DecodeHealth


class FrameSource(ABC):
    """Decodes one video into :class:`~workers.video.plan.Snippet` s, in order, in bounded memory.

    One instance serves one pass over one file. Library failures surface as
    :class:`~workers.exceptions.DecoderFailure` so that another backend can take over from the
    snippet where this one stopped.

    Args:
        info: The probed video (rotation, frame size, fps).
        plan: Snippet length and frame pick.
        budget: Checked between packets (PyAV) or chunks (decord, torchcodec).
        chunk: Snippets a random-access backend may read in one call.
        threads: Decoder threads; 0 lets the library choose.
    """

    name: ClassVar[str]

    def __init__(self, info: VideoInfo, plan: SnippetPlan, budget: DecodeBudget, chunk: int = 32, threads: int = 0):
        self.info = info
        self.plan = plan
        self.budget = budget
        self.chunk = max(1, chunk)
        self.threads = threads
        self.path = Path(info.path)
        self.decoded_frames: int | None = None
        self.health = DecodeHealth()

    @abstractmethod
    def snippets(self, first: int = 0) -> Iterator[Snippet]:
        """Yield snippets ``first, first + 1, …`` to the end of the video.

        When the generator is exhausted, :attr:`decoded_frames` holds the number of frames the
        video really has, as far as this backend can tell.
        """
