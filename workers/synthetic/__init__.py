"""Synthetic videos with known content and events: :mod:`~workers.synthetic.scene` draws the frames (moving
shapes, injected events), :mod:`~workers.synthetic.writer` encodes them to a file with its ground truth.

``vad demo`` trains and checks its demo model on them (:mod:`workers.demo`); the tests and benchmarks use
them as videos whose every frame is known.
"""

from workers.synthetic.scene import EVENT_CLASSES, NORMAL, Event, SceneRenderer
from workers.synthetic.writer import (
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
