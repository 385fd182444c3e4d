"""A truly rotated video: the rotation is the MP4 track's display matrix (``tkhd``), with no ``rotate`` tag.

The rotated file is the upright file's very packets remuxed with a display matrix, so every backend must
return exactly the upright file's frames turned by the matrix, which this test checks by reading the
``tkhd`` box itself rather than trusting a decoder's report of it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from tests.unit.workers.conftest import BACKENDS
from workers.synthetic import SyntheticVideo
from workers.video import iter_snippets, probe

pytestmark = pytest.mark.timeout(120)

# tkhd matrix entries (a, b, c, d), 16.16 fixed point, for a clockwise display rotation of the stored frames. ISO
# 14496-12 maps a stored pixel (p, q) to (a*p + c*q + x, b*p + d*q + y): clockwise 90 sends (p, q) to (H - q, p).
ONE, MINUS_ONE = 0x10000, -0x10000
TKHD_ROTATION = {90: (0, ONE, MINUS_ONE, 0), 180: (MINUS_ONE, 0, 0, MINUS_ONE), 270: (0, MINUS_ONE, ONE, 0)}


def remux_with_display_matrix(source: Path, target: Path, clockwise: int, hflip: bool = False) -> None:
    """Copy ``source``'s video packets into ``target`` (no re-encoding) with a display-matrix rotation."""
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        copy.set_display_rotation(-clockwise, hflip=hflip)  # PyAV takes counter-clockwise degrees, mirrors after
        for packet in inp.demux(stream):
            if packet.dts is None:  # the demuxer's final empty packet
                continue
            packet.stream = copy
            out.mux(packet)


def tkhd_matrix(path: Path) -> tuple[int, ...]:
    """The first video track's display matrix entries (a, b, c, d), read from the MP4 boxes."""
    data = path.read_bytes()

    def boxes(start: int, end: int) -> dict[bytes, tuple[int, int]]:
        found, pos = {}, start
        while pos + 8 <= end:
            size, kind = struct.unpack(">I4s", data[pos:pos + 8])
            found.setdefault(kind, (pos + 8, pos + size))
            pos += size
        return found

    moov = boxes(0, len(data))[b"moov"]
    trak = boxes(*moov)[b"trak"]
    start, _ = boxes(*trak)[b"tkhd"]
    version = data[start]
    matrix_at = start + (52 if version == 1 else 40)  # after times, ids, duration, layer, group, volume
    a, b, _u, c, d, *_ = struct.unpack(">9i", data[matrix_at:matrix_at + 36])
    return a, b, c, d


@pytest.fixture(scope="module")
def upright(synth: Callable[..., SyntheticVideo]) -> SyntheticVideo:
    return synth("upright_for_rotation.mp4", frames=20, size=(128, 96), seed=3)


def frames_of(path: Path, backend: str) -> np.ndarray:
    return np.concatenate([b.frames for b in iter_snippets(path, backend=backend, frame_pick="all")])


@pytest.mark.parametrize("clockwise", [90, 180, 270])
def test_the_remuxed_file_is_truly_rotated(upright: SyntheticVideo, tmp_path: Path, clockwise: int) -> None:
    path = tmp_path / f"rot{clockwise}.mp4"
    remux_with_display_matrix(upright.path, path, clockwise)
    assert tkhd_matrix(path) == TKHD_ROTATION[clockwise]
    assert tkhd_matrix(upright.path) == (ONE, 0, 0, ONE)
    with av.open(str(path)) as container:
        assert "rotate" not in container.streams.video[0].metadata  # no legacy tag to fall back on
    info = probe(path)
    assert info.rotation == clockwise
    assert (info.width, info.height) == ((96, 128) if clockwise in (90, 270) else (128, 96))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("clockwise", [90, 180, 270])
def test_every_backend_decodes_it_upright(upright: SyntheticVideo, tmp_path: Path, backend: str,
                                          clockwise: int) -> None:
    path = tmp_path / f"rot{clockwise}.mp4"
    remux_with_display_matrix(upright.path, path, clockwise)
    stored = frames_of(upright.path, backend)  # [N, 16, H, W, 3]: the same packets, decoded without rotation
    expected = np.rot90(stored, k=-clockwise // 90, axes=(2, 3))  # turned clockwise, as a player shows it
    got = frames_of(path, backend)
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected).mean() < 0.5  # the same pixels: a lossless turn of each frame
    corner = (slice(None), slice(None), slice(0, 8), slice(0, 8))
    assert np.abs(got[corner].astype(int) - expected[corner]).max() <= 2  # the top-left corner is the right one


def mirrored_tkhd(clockwise: int) -> tuple[int, ...]:
    """The matrix of ``clockwise`` then a left-right mirror: av_display_matrix_flip negates the first column."""
    a, b, c, d = TKHD_ROTATION.get(clockwise, (ONE, 0, 0, ONE))
    return -a, b, -c, d


@pytest.mark.parametrize("clockwise", [0, 90, 180, 270])  # EXIF orientations 2, 5, 4 and 7
def test_the_probe_reads_a_mirrored_matrix_as_its_rotation_and_a_mirror(upright: SyntheticVideo, tmp_path: Path,
                                                                        clockwise: int) -> None:
    path = tmp_path / f"mirrored{clockwise}.mp4"
    remux_with_display_matrix(upright.path, path, clockwise, hflip=True)
    assert tkhd_matrix(path) == mirrored_tkhd(clockwise)
    info = probe(path)
    assert (info.rotation, info.hflip) == (clockwise, True)
    assert (info.width, info.height) == ((96, 128) if clockwise in (90, 270) else (128, 96))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("clockwise", [0, 90, 180, 270])
def test_a_mirrored_display_matrix_is_mirrored_not_turned(upright: SyntheticVideo, tmp_path: Path, backend: str,
                                                          clockwise: int) -> None:
    path = tmp_path / f"mirrored{clockwise}.mp4"
    remux_with_display_matrix(upright.path, path, clockwise, hflip=True)
    stored = frames_of(upright.path, backend)  # [N, 16, H, W, 3]
    expected = np.rot90(stored, k=-clockwise // 90, axes=(2, 3))[:, :, :, ::-1]  # turned, then each row reversed
    got = frames_of(path, backend)
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected).mean() < 0.5
    corner = (slice(None), slice(None), slice(0, 8), slice(0, 8))
    assert np.abs(got[corner].astype(int) - expected[corner]).max() <= 2  # the top-left corner is the right one


@pytest.mark.parametrize("clockwise", [0, 90, 180, 270])
def test_a_live_source_mirrors_a_mirrored_display_matrix_too(upright: SyntheticVideo, tmp_path: Path,
                                                              clockwise: int) -> None:
    from workers.stream.live_source import LiveSource

    path = tmp_path / f"mirrored{clockwise}.mp4"
    remux_with_display_matrix(upright.path, path, clockwise, hflip=True)
    stored = np.concatenate([b.frames for b in iter_snippets(upright.path, backend="pyav", keep_tail=False)])
    expected = np.rot90(stored, k=-clockwise // 90, axes=(1, 2))[:, :, ::-1]  # [N, H, W, 3]: turned, then mirrored
    with LiveSource(path, queue_depth=8) as source:
        got = []
        while not source.finished or len(got) < len(expected):
            frame = source.get(timeout=1.0)
            if frame is None and source.finished:
                break
            if frame is not None:
                got.append(frame.image)
    assert len(got) == len(expected)
    assert np.abs(np.stack(got).astype(int) - expected).mean() < 0.5
