"""Video decoding for the workers: probe a file, stream it as snippets of frames.

>>> from workers.video import iter_snippets
>>> with iter_snippets("clip.mp4", frame_pick="middle", batch_size=32) as stream:  # doctest: +SKIP
...     for batch in stream:
...         embed(batch.frames)                     # [N, H, W, 3] uint8 RGB, upright
...     stream.report.decoded_frames                # what was really there
"""

from workers.video.batch import DecodeReport, SnippetBatch
from workers.video.budget import DecodeBudget
from workers.video.decode import Backend, SnippetStream, available_backends, iter_snippets
from workers.video.decord_source import DecordSource
from workers.video.frame_source import FrameSource
from workers.video.plan import FramePick, Snippet, SnippetPlan
from workers.video.probe import MAX_PIXELS, VideoInfo, probe
from workers.video.pyav_source import PyAVSource

__all__ = [
    "MAX_PIXELS",
    "Backend",
    "DecodeBudget",
    "DecodeReport",
    "DecordSource",
    "FramePick",
    "FrameSource",
    "PyAVSource",
    "Snippet",
    "SnippetBatch",
    "SnippetPlan",
    "SnippetStream",
    "VideoInfo",
    "available_backends",
    "iter_snippets",
    "probe",
]
