"""A stream's recent snippet features, so that a closing event's features (and context) can be saved for verdicts.

Each live stream keeps its last :data:`MAX_SNIPPETS` CLIP features (``[D]`` float32 each: 1024 × 512 × 4 bytes =
2 MiB per stream). When an event closes, :meth:`FeatureRing.around` gives its snippets, up to
:data:`CONTEXT_SNIPPETS` before it and what followed it until it closed (the merge gap), as ``[T, D]`` float32: the
VadCLIP feature format, saved by the stream's sink as ``.features/<event id>.npy`` (:mod:`vad.storage.features`).
An event longer than the ring keeps its last :data:`MAX_SNIPPETS` snippets.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from workers.stream.event_tracker import LiveEvent

MAX_SNIPPETS = 1024
CONTEXT_SNIPPETS = 32
"""Snippets of context kept before an event (about 17 s at 30 fps)."""


class FeatureRing:
    """The last ``capacity`` snippet features of one connection of a stream, with their snippet indices."""

    def __init__(self, capacity: int = MAX_SNIPPETS, context: int = CONTEXT_SNIPPETS) -> None:
        self.context = context
        self._items: deque[tuple[int, np.ndarray]] = deque(maxlen=capacity)

    def push(self, index: int, feature: np.ndarray) -> None:
        self._items.append((index, np.asarray(feature, dtype=np.float32)))

    def reset(self) -> None:
        """Forget everything (a new connection: its snippet indices start again)."""
        self._items.clear()

    def last(self, count: int) -> np.ndarray | None:
        """The newest ``count`` features ``[count, D]``, or ``None`` while fewer are kept."""
        if len(self._items) < count:
            return None
        return np.stack([feature for _, feature in list(self._items)[-count:]])

    def around(self, event: LiveEvent) -> tuple[np.ndarray, int] | None:
        """``[T, D]`` features from ``context`` snippets before the event (fewer if the ring has fewer) to the newest
        one, and the snippet index of their first row; ``None`` when none of the event's snippets is kept (it began
        on an earlier connection)."""
        first = event.first_index - self.context
        kept = [(index, feature) for index, feature in self._items if index >= first]
        if not any(event.first_index <= index <= event.last_index for index, _ in kept):
            return None
        return np.stack([feature for _, feature in kept]), kept[0][0]
