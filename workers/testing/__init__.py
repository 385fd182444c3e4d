"""Test helpers that ship with the package: synthetic videos with known content and events.

``vad demo`` uses them to generate training videos, so they live here rather than under ``tests/``.
"""

from workers.testing.scene import EVENT_CLASSES, NORMAL, Event, SceneRenderer
from workers.testing.synthetic_video import (
    SyntheticVideo,
    default_codec,
    make_audio_only,
    make_empty_video,
    make_video,
    random_events,
)

__all__ = [
    "EVENT_CLASSES",
    "NORMAL",
    "Event",
    "SceneRenderer",
    "SyntheticVideo",
    "default_codec",
    "make_audio_only",
    "make_empty_video",
    "make_video",
    "random_events",
]
