"""probe(): what a file claims, and clear errors for files that are not usable videos."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.workers.media import cut, mdat_offset
from workers.exceptions import DecodeCancelled, DecodeTimeout, VideoError, WorkerError
from workers.synthetic import SyntheticVideo, make_audio_only, make_empty_video
from workers.video import probe

pytestmark = pytest.mark.timeout(60)


def test_probe_reads_the_header_and_first_frame(clip100: SyntheticVideo) -> None:
    info = probe(clip100.path)
    assert info.fps == 25.0 and info.frame_count == 100 and info.estimated_frames == 100
    assert info.duration_s == pytest.approx(4.0)
    assert (info.width, info.height, info.rotation) == (128, 96, 0)
    assert info.codec == "h264" and info.pix_fmt == "yuv420p" and "mp4" in info.container
    assert info.has_audio is False and info.path == str(clip100.path)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_from_the_display_matrix(synth: Callable[..., SyntheticVideo], rotation: int) -> None:
    video = synth(f"rot{rotation}.mp4", frames=20, size=(128, 96), rotation=rotation)
    info = probe(video.path)
    assert info.rotation == rotation
    assert (info.width, info.height) == (128, 96), "width and height are those of the upright picture"
    assert info.stored_size == ((96, 128) if rotation != 180 else (128, 96))


def test_variable_frame_rate_reports_the_average(synth: Callable[..., SyntheticVideo]) -> None:
    video = synth("vfr.mp4", frames=100, fps=25.0, vfr=True, seed=3)
    info = probe(video.path)
    assert info.frame_count == 100
    assert info.fps == pytest.approx(100 / info.duration_s, rel=0.02)
    assert info.duration_s == pytest.approx(video.duration_s, abs=0.05)


@pytest.mark.parametrize(("size", "pix_fmt"), [((1, 1), "yuv444p"), ((4000, 3000), "yuv420p")])
def test_extreme_sizes(synth: Callable[..., SyntheticVideo], size: tuple[int, int], pix_fmt: str) -> None:
    video = synth(f"size{size[0]}x{size[1]}.mp4", frames=2, size=size, noise=0)
    info = probe(video.path)
    assert (info.width, info.height, info.pix_fmt) == (*size, pix_fmt)


def test_frames_over_the_pixel_limit_are_rejected(clip100: SyntheticVideo) -> None:
    with pytest.raises(VideoError, match=r"128x96.*Downscale"):
        probe(clip100.path, max_pixels=100 * 100)


def test_text_file_renamed_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoError, match="not a video container") as raised:
        probe(path)
    assert raised.value.path == path and "MP4" in str(raised.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="does not exist"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(VideoError, match="directory"):
        probe(tmp_path)


def test_audio_only(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="audio-only"):
        probe(make_audio_only(tmp_path / "song.mp4"))


def test_zero_frame_container(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="no video stream"):
        probe(make_empty_video(tmp_path / "empty.mp4"))


def test_truncated_file_without_its_index(clip100: SyntheticVideo, tmp_path: Path) -> None:
    # the default MP4 layout writes the index (moov) last, so the first half has none
    half = cut(clip100.path, tmp_path / "half.mp4", clip100.path.stat().st_size // 2)
    with pytest.raises(VideoError, match="not a video container"):
        probe(half)


def test_index_without_data_has_no_decodable_frame(synth: Callable[..., SyntheticVideo], tmp_path: Path) -> None:
    video = synth("faststart.mp4", frames=100, faststart=True, seed=5)
    header_only = cut(video.path, tmp_path / "header.mp4", mdat_offset(video.path) + 16)
    with pytest.raises(VideoError, match="no frame could be decoded"):
        probe(header_only)


def test_timeout_and_stop(clip100: SyntheticVideo) -> None:
    with pytest.raises(DecodeTimeout, match=r"budget of 0\.00 s") as raised:
        probe(clip100.path, timeout_s=0.0)
    assert isinstance(raised.value, TimeoutError) and isinstance(raised.value, WorkerError)
    stop = threading.Event()
    stop.set()
    with pytest.raises(DecodeCancelled, match="cancelled"):
        probe(clip100.path, stop=stop)
    assert probe(clip100.path, timeout_s=30.0).frame_count == 100
