"""A cheap test of whether a frame shows the same scene as a reference frame, to skip its CLIP forward.

Most surveillance footage is static most of the time: a kept frame that looks like the last frame that was
encoded would give (nearly) the same CLIP feature, so that feature is reused instead of running the image tower.
The test compares *small grey copies*: the frame cut into cells about 1/64 of its width (10x10 pixels at 640x360),
each cell's mean grey level. The frame has changed when some cell's mean moved by more than ``threshold`` grey
levels (0-255). The largest cell, not the mean over the frame: a person walking far from the camera changes a few
cells a lot and the frame's mean hardly at all, and must not be skipped. Cell means wash out sensor noise and
compression grain (a still H.264 scene at CRF 28-35 moves its cells by at most 4.3 levels here, keyframes
included); comparing with the last *encoded* frame (not the previous one) means a slow drift (light, a slowly
moving object) is re-encoded once it adds up to the threshold.

The cost is 0.5-2 ms per frame (640x360 to 1280x720), against 0.3-0.6 s for one ViT-B/16 forward on a CPU.
"""

from __future__ import annotations

import numpy as np

SMALL_WIDTH = 64
"""Width, in pixels, of the grey copies compared (the height follows the frame's aspect)."""


def small_grey(frame: np.ndarray, width: int = SMALL_WIDTH) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` → float32 grey ``[h, w]`` about ``width`` pixels across (block means)."""
    height_px, width_px = frame.shape[:2]
    block = max(1, width_px // width)
    stride = max(1, block // 4)  # sample 4x4 pixels per block at most: cheap on big frames, still noise-averaging
    rows, cols = (height_px // block) * block, (width_px // block) * block
    sampled = frame[:rows:stride, :cols:stride].astype(np.float32).mean(axis=2)
    per = block // stride
    h, w = sampled.shape[0] // per, sampled.shape[1] // per
    return sampled[: h * per, : w * per].reshape(h, per, w, per).mean(axis=(1, 3))


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """The largest absolute difference between two small grey copies' cells (``inf`` when their shapes differ)."""
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max())


class ChangeGate:
    """Decides, frame by frame in time order, whether a frame must be encoded or shows the last encoded scene.

    Args:
        threshold: Grey levels that no cell of the small grey copy may move by for a frame to count as unchanged;
            ``0`` turns the test off (every frame is encoded).

    >>> gate = ChangeGate(threshold=8.0)
    >>> feature = encode(frame) if gate.changed(frame) else last_feature     # doctest: +SKIP
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.encoded = 0
        self.reused = 0
        self._reference: np.ndarray | None = None

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def changed(self, frame: np.ndarray) -> bool:
        """Whether ``frame`` must be encoded; when it must, it becomes the reference later frames are compared to."""
        if self.enabled:
            grey = small_grey(frame)
            if self._reference is not None and difference(grey, self._reference) <= self.threshold:
                self.reused += 1
                return False
            self._reference = grey
        self.encoded += 1
        return True

    def reset(self) -> None:
        """Forget the reference (a new connection, or a frame whose encoding failed): the next frame is encoded."""
        self._reference = None

    def plan(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For frames ``[N, H, W, 3]`` in time order: which to encode, and the feature each one takes.

        Returns:
            ``(encode, take)``: the indices of the frames to encode, and for each frame the position in ``encode``
            of the frame whose feature it takes (``-1``: the last feature before this batch).
        """
        encode, take, slot = [], np.empty(len(frames), np.int64), -1
        for i, frame in enumerate(frames):
            if self.changed(frame):
                encode.append(i)
                slot = len(encode) - 1
            take[i] = slot
        return np.asarray(encode, np.int64), take
