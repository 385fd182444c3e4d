"""iter_snippets(): snippet grouping, frame picks, timestamps, backends, bounded memory, bad inputs."""

from __future__ import annotations

import logging
import math
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from tests.unit.workers.conftest import BACKENDS, RANDOM_ACCESS, backend_param, installed
from tests.unit.workers.media import cut, scramble
from workers.exceptions import DecodeCancelled, DecoderFailure, DecoderUnavailable, DecodeTimeout, VideoError
from workers.synthetic import SceneRenderer, SyntheticVideo, make_audio_only
from workers.video import DecodeBudget, DecordSource, SnippetBatch, available_backends, iter_snippets, probe
from workers.video import decode as decode_module
from workers.video.torchcodec_source import TorchCodecSource

pytestmark = pytest.mark.timeout(60)

FRAME_TOLERANCE = 1.0
"""Largest mean absolute difference, in grey levels, allowed between a backend's frames and PyAV's.

All three backends convert to RGB with FFmpeg; on these videos torchcodec's and decord's frames are
identical to PyAV's, and the tolerance covers FFmpeg builds that round differently.
"""


def join(batches: list[SnippetBatch]) -> SnippetBatch:
    """Concatenate batches into one."""
    return SnippetBatch(*(np.concatenate([getattr(b, f) for b in batches]) for f in SnippetBatch.__dataclass_fields__))


def read_all(path: Path, **kwargs: object) -> tuple[SnippetBatch, list[int]]:
    """All batches of a stream joined into one, and the batch sizes."""
    batches = list(iter_snippets(path, **kwargs))  # type: ignore[arg-type]
    return join(batches), [len(b) for b in batches]


def raw_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize("backend", BACKENDS)
def test_snippets_and_timestamps_of_100_frames_at_25_fps(clip100: SyntheticVideo, backend: str) -> None:
    stream = iter_snippets(clip100.path, backend=backend, batch_size=3)
    batches = list(stream)
    assert [len(b) for b in batches] == [3, 3, 1]
    snippets = join(batches)
    assert snippets.snippet_index.tolist() == list(range(7))
    assert snippets.n_frames.tolist() == [16] * 6 + [4]
    assert snippets.frame_index.tolist() == [8, 24, 40, 56, 72, 88, 99]  # middle, clamped in the 96..99 tail
    np.testing.assert_array_equal(snippets.start_s, [16 * j / 25 for j in range(7)])
    np.testing.assert_array_equal(snippets.end_s, [16 * (j + 1) / 25 for j in range(6)] + [4.0])
    assert snippets.frames.shape == (7, 96, 128, 3) and snippets.frames.dtype == np.uint8
    report = stream.report
    assert (report.backend, report.claimed_frames, report.decoded_frames, report.snippets) == (backend, 100, 100, 7)
    assert not report.frame_count_mismatch and report.fallback_reason is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("pick", "expected"),
    [("first", [0, 16, 32, 48, 64, 80, 96]), (3, [3, 19, 35, 51, 67, 83, 99]), (15, [15, 31, 47, 63, 79, 95, 99])],
)
def test_frame_pick_returns_the_right_frames(
    clip100: SyntheticVideo, backend: str, pick: object, expected: list
) -> None:
    snippets, _ = read_all(clip100.path, backend=backend, frame_pick=pick)
    assert snippets.frame_index.tolist() == expected
    truth = raw_frames(clip100.path)[expected]
    assert np.abs(snippets.frames.astype(int) - truth).mean() < FRAME_TOLERANCE


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_frames_pads_the_tail_with_its_last_frame(clip100: SyntheticVideo, backend: str) -> None:
    snippets, sizes = read_all(clip100.path, backend=backend, frame_pick="all", batch_size=4)
    assert sizes == [4, 3]
    assert snippets.frames.shape == (7, 16, 96, 128, 3)
    assert snippets.frame_index[0].tolist() == list(range(16))
    assert snippets.frame_index[-1].tolist() == [96, 97, 98, 99] + [99] * 12
    np.testing.assert_array_equal(snippets.frames[-1, 4:], np.broadcast_to(snippets.frames[-1, 3], (12, 96, 128, 3)))
    truth = raw_frames(clip100.path)
    assert np.abs(snippets.frames[:6].reshape(96, 96, 128, 3).astype(int) - truth[:96]).mean() < FRAME_TOLERANCE


@pytest.mark.parametrize("backend", BACKENDS)
def test_tail_can_be_dropped(clip100: SyntheticVideo, backend: str) -> None:
    stream = iter_snippets(clip100.path, backend=backend, keep_tail=False)
    snippets = [i for b in stream for i in b.snippet_index]
    assert snippets == list(range(6)) and stream.report.decoded_frames == 100


@pytest.mark.parametrize("backend", RANDOM_ACCESS)
@pytest.mark.parametrize("pick", ["middle", "all"])
def test_backends_agree_with_pyav(synth: Callable[..., SyntheticVideo], backend: str, pick: str) -> None:
    for video in (synth("clip100.mp4"), synth("mpeg4.mp4", frames=50, codec="mpeg4", seed=2)):
        out, _ = read_all(video.path, backend=backend, frame_pick=pick)
        pyav_out, _ = read_all(video.path, backend="pyav", frame_pick=pick)
        np.testing.assert_array_equal(out.frame_index, pyav_out.frame_index)
        np.testing.assert_allclose(out.start_s, pyav_out.start_s, atol=1e-6)
        np.testing.assert_allclose(out.end_s, pyav_out.end_s, atol=1e-6)
        assert np.abs(out.frames.astype(int) - pyav_out.frames).mean() < FRAME_TOLERANCE


@pytest.mark.parametrize("backend", [backend_param("torchcodec")])
def test_torchcodec_frames_and_times_equal_pyavs(synth: Callable[..., SyntheticVideo], backend: str) -> None:
    for video in (synth("clip100.mp4"), synth("vfr.mp4", frames=100, fps=25.0, vfr=True, seed=3),
                  synth("rot90.mp4", frames=20, size=(128, 96), rotation=90)):
        out, _ = read_all(video.path, backend=backend, frame_pick="all")
        pyav_out, _ = read_all(video.path, backend="pyav", frame_pick="all")
        np.testing.assert_array_equal(out.frames, pyav_out.frames)  # FFmpeg's converter in both, here
        np.testing.assert_array_equal(out.start_s, pyav_out.start_s)  # the same rule, on the same timestamps
        np.testing.assert_array_equal(out.end_s, pyav_out.end_s)


@pytest.mark.parametrize("backend", BACKENDS)
def test_variable_frame_rate_uses_timestamps(synth: Callable[..., SyntheticVideo], backend: str) -> None:
    video = synth("vfr.mp4", frames=100, fps=25.0, vfr=True, seed=3)
    snippets, _ = read_all(video.path, backend=backend)
    truth = [video.frame_times_s[16 * j] for j in range(7)]
    np.testing.assert_allclose(snippets.start_s, truth, atol=1e-6)
    assert truth != pytest.approx([16 * j / video.fps for j in range(7)], abs=1e-3), "the test video is not VFR"
    np.testing.assert_allclose(snippets.end_s[:-1], snippets.start_s[1:], atol=1e-6)
    assert snippets.end_s[-1] == pytest.approx(video.duration_s, abs=1.5 / video.fps)  # last duration is a claim


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_videos_come_out_upright(synth: Callable[..., SyntheticVideo], backend: str, rotation: int) -> None:
    video = synth(f"rot{rotation}.mp4", frames=20, size=(128, 96), rotation=rotation)
    snippets, _ = read_all(video.path, backend=backend, frame_pick="first")
    assert snippets.frames.shape == (2, 96, 128, 3)
    renderer = SceneRenderer(128, 96)
    for frame, index in zip(snippets.frames, snippets.frame_index, strict=True):
        upright = renderer.render(int(index), video.frame_times_s[index]).astype(int)
        assert np.abs(frame.astype(int) - upright).mean() < 8


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_frame_video(synth: Callable[..., SyntheticVideo], backend: str) -> None:
    video = synth("one.mp4", frames=1)
    snippets, _ = read_all(video.path, backend=backend)
    assert snippets.frame_index.tolist() == [0] and snippets.n_frames.tolist() == [1]
    assert snippets.start_s.tolist() == [0.0] and snippets.end_s.tolist() == [0.04]
    stream = iter_snippets(video.path, backend=backend, keep_tail=False)
    assert list(stream) == [] and stream.report.decoded_frames == 1


@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
def test_1x1_video(synth: Callable[..., SyntheticVideo], backend: str) -> None:
    video = synth("tiny.mp4", frames=20, size=(1, 1))
    if backend == "decord":  # decord 0.6 cannot copy frames 16 pixels wide or narrower
        with pytest.raises(VideoError, match=r"decord backend failed.*backend='auto'"):
            list(iter_snippets(video.path, backend="decord"))
        return
    stream = iter_snippets(video.path, backend=backend)  # type: ignore[arg-type]
    frames = np.concatenate([b.frames for b in stream])
    assert frames.shape == (2, 1, 1, 3) and stream.report.decoded_frames == 20
    assert stream.report.fallback_reason is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_4000x3000_video(synth: Callable[..., SyntheticVideo], backend: str) -> None:
    video = synth("size4000x3000.mp4", frames=2, size=(4000, 3000), noise=0)
    stream = iter_snippets(video.path, backend=backend)
    batches = list(stream)
    assert [b.frames.shape for b in batches] == [(1, 3000, 4000, 3)]
    assert batches[0].frame_index.tolist() == [1] and stream.report.decoded_frames == 2
    assert stream.batch_size == 7, "the default 256 MiB cap allows seven 36 MB frames per batch"


def test_batch_bytes_cap_lowers_the_batch_size(clip100: SyntheticVideo) -> None:
    stream = iter_snippets(clip100.path, batch_size=32, max_batch_bytes=2 * 128 * 96 * 3)
    assert stream.batch_size == 2 and {len(b) for b in stream} == {1, 2}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("pick", "batch_size"), [("middle", 4), ("all", 2)])
def test_memory_is_bounded_by_the_batch(
    synth: Callable[..., SyntheticVideo], backend: str, pick: str, batch_size: int
) -> None:
    video = synth("long.mp4", frames=640, seed=4)  # 40 snippets; the whole video is 23.6 MB of RGB
    frame_bytes, per = 128 * 96 * 3, (16 if pick == "all" else 1)
    tracemalloc.start()
    try:
        stream = iter_snippets(video.path, backend=backend, frame_pick=pick, batch_size=batch_size)
        sizes = [len(batch) for batch in stream]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert max(sizes) <= batch_size and sum(sizes) == 40 and len(sizes) == math.ceil(40 / batch_size)
    batch_bytes = batch_size * per * frame_bytes
    assert peak < 4 * batch_bytes + 2**20, f"peak {peak / 2**20:.1f} MiB for batches of {batch_bytes / 2**20:.2f} MiB"


@pytest.mark.parametrize("backend", BACKENDS)
def test_stream_stops_when_closed(synth: Callable[..., SyntheticVideo], backend: str) -> None:
    video = synth("long.mp4", frames=640, seed=4)
    with iter_snippets(video.path, backend=backend, batch_size=4) as stream:
        first = next(stream)
    assert first.snippet_index.tolist() == [0, 1, 2, 3]
    assert stream.report.decoded_frames is None and stream.report.snippets == 4
    with pytest.raises(StopIteration):
        next(stream)


FLAKY = {"decord": (DecordSource, "_get_batch"), "torchcodec": (TorchCodecSource, "_get_frames")}
"""Where each random-access backend reads a chunk of frames, to make it fail on its second chunk."""


@pytest.mark.parametrize("backend", RANDOM_ACCESS)
def test_auto_resumes_with_pyav_where_a_backend_failed(
    clip100: SyntheticVideo, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    cls, method = FLAKY[backend]
    original = getattr(cls, method)
    calls = []

    def flaky(self: DecordSource | TorchCodecSource, *args: object) -> np.ndarray:
        calls.append(args)
        if len(calls) == 2:
            raise DecoderFailure(backend, self.path, "simulated failure")
        return original(self, *args)

    monkeypatch.setattr(cls, method, flaky)
    monkeypatch.setattr(decode_module, "AUTO_ORDER", (backend, "pyav"))
    stream = iter_snippets(clip100.path, batch_size=2)
    snippets = [b for b in stream]
    assert [i for b in snippets for i in b.snippet_index] == list(range(7)), "no snippet lost or repeated"
    report = stream.report
    assert (report.backend, report.fallback_from) == ("pyav", backend)
    assert "simulated failure" in (report.fallback_reason or "")
    reference, _ = read_all(clip100.path, backend="pyav")
    frames = np.concatenate([b.frames for b in snippets]).astype(int)
    assert np.abs(frames - reference.frames).mean() < FRAME_TOLERANCE


def test_auto_tries_the_fastest_installed_backend_first(clip100: SyntheticVideo) -> None:
    # measured by bench/pipeline.py --decoders (see decode.AUTO_ORDER and docs/analysis.md#decoders): PyAV is the
    # fastest, torchcodec faster than decord (issue 13: decord took 1.29x PyAV's time)
    assert decode_module.AUTO_ORDER == ("pyav", "torchcodec", "decord")
    assert available_backends() == tuple(name for name in decode_module.AUTO_ORDER if name in installed())
    stream = iter_snippets(clip100.path)
    assert sum(len(b) for b in stream) == 7
    assert stream.report.backend == "pyav" and stream.report.fallback_reason is None


@pytest.mark.parametrize("missing", [("torchcodec",), ("decord",), ("torchcodec", "decord")])
def test_auto_without_a_backend_uses_the_others(
    clip100: SyntheticVideo, monkeypatch: pytest.MonkeyPatch, missing: tuple[str, ...]
) -> None:
    expected = tuple(name for name in installed() if name not in missing)  # asked before the imports are broken
    for name in missing:
        monkeypatch.setattr(decode_module, f"import_{name}", lambda: None)
    assert available_backends() == expected and expected[0] == "pyav"
    stream = iter_snippets(clip100.path)
    assert sum(len(b) for b in stream) == 7 and stream.report.backend == "pyav"
    for name in missing:
        with pytest.raises(DecoderUnavailable, match=rf"{name}.*backend='pyav'"):
            iter_snippets(clip100.path, backend=name)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_unusable_files_raise_video_error_at_once(tmp_path: Path, clip100: SyntheticVideo, backend: str) -> None:
    text = tmp_path / "text.mp4"
    text.write_text("not a video\n" * 100)
    half = cut(clip100.path, tmp_path / "half.mp4", clip100.path.stat().st_size // 2)
    for path, match in [
        (text, "not a video container"),
        (half, "not a video container"),
        (make_audio_only(tmp_path / "audio.mp4"), "audio-only"),
    ]:
        with pytest.raises(VideoError, match=match):
            iter_snippets(path, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_file_with_index_keeps_what_decodes(
    synth: Callable[..., SyntheticVideo], tmp_path: Path, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    video = synth("faststart.mp4", frames=100, faststart=True, seed=5)
    half = cut(video.path, tmp_path / "half.mp4", video.path.stat().st_size // 2)
    if backend != "pyav":  # decord cannot even index it; torchcodec cannot decode its last indexed frame
        with pytest.raises(VideoError, match=rf"{backend} backend failed.*backend='auto'"):
            list(iter_snippets(half, backend=backend))
        return
    with caplog.at_level(logging.WARNING):
        stream = iter_snippets(half, backend=backend)
        count = sum(len(b) for b in stream)
    report = stream.report
    assert report.claimed_frames == 100 and 0 < report.decoded_frames < 100 and report.frame_count_mismatch
    assert count == math.ceil(report.decoded_frames / 16)
    assert "claims 100 frames" in caplog.text


@pytest.mark.parametrize("backend", RANDOM_ACCESS)
def test_a_truncated_file_is_handed_to_pyav(
    synth: Callable[..., SyntheticVideo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    video = synth("faststart.mp4", frames=100, faststart=True, seed=5)
    half = cut(video.path, tmp_path / "half.mp4", video.path.stat().st_size // 2)
    pyav = iter_snippets(half, backend="pyav")
    pyav_out = join(list(pyav))
    monkeypatch.setattr(decode_module, "AUTO_ORDER", (backend, "pyav"))  # as if it came first
    auto = iter_snippets(half, backend="auto")
    auto_out = join(list(auto))
    assert (auto.report.backend, auto.report.fallback_from) == ("pyav", backend)
    assert auto.report.decoded_frames == pyav.report.decoded_frames < 100
    np.testing.assert_array_equal(auto_out.frames, pyav_out.frames)
    np.testing.assert_array_equal(auto_out.end_s, pyav_out.end_s)


@pytest.mark.parametrize("backend", BACKENDS)
def test_damage_in_the_middle(clip100: SyntheticVideo, tmp_path: Path, backend: str) -> None:
    damaged = scramble(clip100.path, tmp_path / "damaged.mp4", at=0.5)
    if backend != "pyav":  # the random-access backends stop at the damage; alone, they cannot go on
        with pytest.raises(VideoError, match=rf"{backend} backend failed.*backend='auto'"):
            list(iter_snippets(damaged, backend=backend))
        return
    stream = iter_snippets(damaged, backend=backend)
    assert sum(len(b) for b in stream) == 7
    report = stream.report
    assert report.bad_packets > 0 and 90 < report.decoded_frames < 100  # PyAV skips what it cannot decode


@pytest.mark.parametrize("backend", RANDOM_ACCESS)
def test_damage_in_the_middle_is_handed_to_pyav(
    clip100: SyntheticVideo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    damaged = scramble(clip100.path, tmp_path / "damaged.mp4", at=0.5)
    monkeypatch.setattr(decode_module, "AUTO_ORDER", (backend, "pyav"))  # as if it came first
    stream = iter_snippets(damaged, backend="auto", batch_size=2)
    snippets = join(list(stream))
    assert snippets.snippet_index.tolist() == list(range(7)), "no snippet lost or repeated"
    assert (stream.report.backend, stream.report.fallback_from) == ("pyav", backend)
    assert stream.report.bad_packets > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout_of_zero_raises_decode_timeout(clip100: SyntheticVideo, backend: str) -> None:
    with pytest.raises(DecodeTimeout):
        list(iter_snippets(clip100.path, backend=backend, timeout_s=0.0))
    stream = iter_snippets(clip100.path, backend=backend, timeout_s=1e-9, info=probe(clip100.path))
    with pytest.raises(DecodeTimeout, match="raise timeout_s"):
        next(stream)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_event_cancels_between_batches(synth: Callable[..., SyntheticVideo], backend: str) -> None:
    video = synth("long.mp4", frames=640, seed=4)
    stop = threading.Event()
    stream = iter_snippets(video.path, backend=backend, batch_size=2, stop=stop)
    next(stream)
    stop.set()
    with pytest.raises(DecodeCancelled):
        next(stream)


def test_budget_counts_only_decoder_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("workers.video.budget.time.monotonic", lambda: clock[0])
    budget = DecodeBudget("x.mp4", timeout_s=1.0)
    with budget.running():
        clock[0] += 0.6
        budget.check()
    clock[0] += 50.0  # the consumer's time between batches
    with budget.running():
        clock[0] += 0.3
        budget.check()
        assert budget.elapsed_s == pytest.approx(0.9)
        clock[0] += 0.2
        with pytest.raises(DecodeTimeout, match=r"1\.10 s, over its budget of 1\.00 s"):
            budget.check()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"frame_pick": 16}, "frame_pick"),
        ({"frame_pick": "centre"}, "frame_pick"),
        ({"frame_pick": True}, "frame_pick"),
        ({"snippet_frames": 0}, "snippet_frames"),
        ({"batch_size": 0}, "batch_size"),
        ({"backend": "opencv"}, "backend"),
        ({"timeout_s": -1.0}, "timeout_s"),
    ],
)
def test_bad_options(clip100: SyntheticVideo, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        iter_snippets(clip100.path, **kwargs)
