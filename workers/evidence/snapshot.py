"""Snapshots: the peak snippet's kept frame as a JPEG, and its thumbnail (Pillow)."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from workers.video.plan import upright
from workers.video.pyav_io import orientation

JPEG_QUALITY = 85


def jpeg(image: np.ndarray, width: int | None = None) -> bytes:
    """An RGB uint8 ``[H, W, 3]`` image as JPEG bytes, scaled down to ``width`` pixels (never up) when given."""
    picture = Image.fromarray(np.ascontiguousarray(image), "RGB")
    if width is not None and picture.width > width:
        height = max(1, round(picture.height * width / picture.width))
        picture = picture.resize((width, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


def frame_at(source: Path, t_s: float) -> np.ndarray:
    """The upright RGB frame of a stored video shown at ``t_s`` seconds from its first frame (decoded from the
    keyframe before it: only that GOP).

    Raises:
        ValueError: No frame at that time.
    """
    with av.open(str(source), "r") as container:
        stream = container.streams.video[0]
        tb = stream.time_base or Fraction(1, 90000)
        origin = stream.start_time or 0
        target = origin + int(max(0.0, t_s) / tb)
        container.seek(target, stream=stream, backward=True, any_frame=False)
        chosen = None
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            chosen = frame
            if frame.pts >= target:
                break
        if chosen is None:
            raise ValueError(f"{source.name} has no frame at {t_s:.2f} s")
        return upright(chosen.to_ndarray(format="rgb24"), *orientation(chosen, stream))
