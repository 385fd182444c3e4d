"""A deterministic synthetic scene: normal motion plus injected events of known classes.

Normal motion is a slowly panning texture with a few shapes drifting on smooth paths and mild sensor
noise. Each event class changes the picture in its own, easily told-apart way:

* ``flash``: the whole frame strobes towards saturated magenta, two frames on, two off;
* ``fast_object``: a large black block sweeps across the frame in 0.4 s, again and again;
* ``flicker``: global brightness jumps randomly between 30 % and 170 % every frame;
* ``color_shift``: colour channels rotate and the scene turns blue for as long as the event lasts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EVENT_CLASSES: tuple[str, ...] = ("flash", "fast_object", "flicker", "color_shift")
"""Event classes the scene can render."""

NORMAL = "normal"
"""Label of frames that are in no event."""


@dataclass(frozen=True)
class Event:
    """An injected event: ``class_name`` is visible for times ``start_s <= t < end_s``."""

    class_name: str
    start_s: float
    end_s: float

    def __post_init__(self) -> None:
        if self.class_name not in EVENT_CLASSES:
            raise ValueError(f"unknown event class {self.class_name!r}; choose one of {EVENT_CLASSES}")
        if not 0 <= self.start_s < self.end_s:
            raise ValueError(f"event times must satisfy 0 <= start_s < end_s, got {self.start_s}, {self.end_s}")

    def covers(self, t: float) -> bool:
        """Whether the event is visible at time ``t``."""
        return self.start_s <= t < self.end_s


@dataclass(frozen=True)
class _Shape:
    colour: np.ndarray
    half: tuple[int, int]
    phase: np.ndarray
    freq: np.ndarray


class SceneRenderer:
    """Renders upright RGB frames of the scene; the same seed always gives the same frames.

    Args:
        width: Frame width in pixels (>= 1).
        height: Frame height in pixels (>= 1).
        seed: Seed of the texture, shapes, noise and flicker.
        events: Events to inject.
        noise: Amplitude of the sensor noise in grey levels (0 for none; keeps big frames cheap).
        still: Intervals ``(start_s, end_s)`` during which the normal motion stops (a static scene: only the
            sensor noise and events change the picture); it resumes where it stopped.
    """

    def __init__(
        self, width: int, height: int, seed: int = 0, events: Sequence[Event] = (), noise: float = 2.0,
        still: Sequence[tuple[float, float]] = (),
    ) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"frame size must be at least 1x1, got {width}x{height}")
        self.width, self.height = width, height
        self.seed = seed
        self.events = tuple(events)
        self.still = tuple(sorted((float(a), float(b)) for a, b in still))
        rng = np.random.default_rng(seed)
        self._texture = self._make_texture(rng)
        self._shapes = [self._make_shape(rng) for _ in range(3)]
        self._noise = [rng.normal(0.0, noise, (height, width, 3)).astype(np.int16) for _ in range(4)] if noise else []

    def render(self, index: int, t: float) -> np.ndarray:
        """Frame ``index`` at time ``t`` seconds, ``[height, width, 3]`` uint8 RGB."""
        moving = self.motion_time(t)
        shift = int(moving * 6) % self.width  # the camera pans slowly
        frame = np.roll(self._texture, shift, axis=1).astype(np.int16)
        for shape in self._shapes:
            self._draw_shape(frame, shape, moving)
        if self._noise:
            frame += self._noise[index % len(self._noise)]
        for event in self.events:
            if event.covers(t):
                frame = self._apply_event(frame, event, index, t)
        return np.clip(frame, 0, 255).astype(np.uint8)

    def motion_time(self, t: float) -> float:
        """The time of the normal motion at ``t``: ``t`` less the still time before it."""
        return t - sum(max(0.0, min(t, b) - a) for a, b in self.still)

    def label(self, t: float) -> str:
        """Class of the first event visible at time ``t``, or :data:`NORMAL`."""
        for event in self.events:
            if event.covers(t):
                return event.class_name
        return NORMAL

    def _make_texture(self, rng: np.random.Generator) -> np.ndarray:
        cells = rng.integers(60, 190, (max(2, self.height // 12), max(2, self.width // 12), 3))
        ry, rx = -(-self.height // cells.shape[0]), -(-self.width // cells.shape[1])
        texture = np.repeat(np.repeat(cells, ry, axis=0), rx, axis=1)[: self.height, : self.width]
        return texture.astype(np.uint8)

    def _make_shape(self, rng: np.random.Generator) -> _Shape:
        half = (max(1, self.height // 10), max(1, self.width // 10))
        return _Shape(rng.integers(0, 256, 3), half, rng.uniform(0, 2 * np.pi, 2), rng.uniform(0.1, 0.4, 2))

    def _draw_shape(self, frame: np.ndarray, shape: _Shape, t: float) -> None:
        cy, cx = (0.5 + 0.35 * np.sin(2 * np.pi * shape.freq * t + shape.phase)) * (self.height, self.width)
        y0, x0 = max(0, int(cy) - shape.half[0]), max(0, int(cx) - shape.half[1])
        frame[y0 : int(cy) + shape.half[0] + 1, x0 : int(cx) + shape.half[1] + 1] = shape.colour

    def _apply_event(self, frame: np.ndarray, event: Event, index: int, t: float) -> np.ndarray:
        name = event.class_name
        if name == "flash":
            if index % 4 < 2:
                frame = frame // 4 + np.array([190, 20, 190], np.int16)
        elif name == "fast_object":
            width = max(1, self.width // 3)
            x0 = int(((t - event.start_s) / 0.4 % 1.0) * (self.width + width)) - width
            frame[self.height // 4 : self.height - self.height // 4, max(0, x0) : max(0, x0 + width)] = 0
        elif name == "flicker":
            gain = np.random.default_rng((self.seed, index)).uniform(0.3, 1.7)
            frame = (frame * gain).astype(np.int16)
        else:  # color_shift
            frame = frame[..., [2, 0, 1]] // 2 + np.array([0, 20, 120], np.int16)
        return frame
