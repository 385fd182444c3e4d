"""Small synthetic videos shared by the worker tests (generated once per session, in a temp dir)."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

from workers.synthetic import Event, SyntheticVideo, make_video
from workers.video import available_backends
from workers.video.decode import AUTO_ORDER


@functools.cache
def installed() -> tuple[str, ...]:
    """Backends usable here, in the order ``backend='auto'`` tries them (asked when a test needs it, not while
    collecting: importing torchcodec takes seconds)."""
    return available_backends()


def backend_param(name: str) -> object:
    """``name`` as a test parameter that skips, saying why, when its package is not installed.

    Installed but unusable (torchcodec without FFmpeg's shared libraries) is a failure, not a skip.
    """
    missing = name != "pyav" and importlib.util.find_spec(name) is None
    reason = f"{name} is not installed (pip install -e '.[worker]'; torchcodec also needs scripts/ensure-ffmpeg.sh)"
    return pytest.param(name, marks=pytest.mark.skipif(missing, reason=reason))


BACKENDS = [backend_param(name) for name in AUTO_ORDER]
"""Every backend, as test parameters: PyAV, torchcodec and decord."""

RANDOM_ACCESS = [backend_param(name) for name in AUTO_ORDER if name != "pyav"]
"""The backends compared with PyAV, the sequential reference."""

EVENTS = (Event("flash", 1.0, 1.6), Event("color_shift", 2.5, 3.2))


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def synth(video_dir: Path) -> Callable[..., SyntheticVideo]:
    """``synth(name, **make_video_kwargs)``: the video written once under that name."""
    cache: dict[str, SyntheticVideo] = {}

    def make(name: str, **kwargs: object) -> SyntheticVideo:
        if name not in cache:
            cache[name] = make_video(video_dir / name, **kwargs)  # type: ignore[arg-type]
        return cache[name]

    return make


@pytest.fixture(scope="session")
def clip100(synth: Callable[..., SyntheticVideo]) -> SyntheticVideo:
    """100 frames at 25 fps, 128x96, with two events: 6 full snippets and a 4-frame tail."""
    return synth("clip100.mp4", frames=100, fps=25.0, events=EVENTS, seed=1)
