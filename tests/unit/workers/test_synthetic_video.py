"""The synthetic video generator: ground truth, determinism, events, timing options."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest

from workers.synthetic import (
    EVENT_CLASSES,
    NORMAL,
    Event,
    SceneRenderer,
    SyntheticVideo,
    make_audio_only,
    make_empty_video,
    make_video,
    random_events,
)

pytestmark = pytest.mark.timeout(60)


def decode_all(path: Path) -> tuple[np.ndarray, list[float]]:
    """All frames (as stored, RGB) and their presentation times, straight from PyAV."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return np.stack([f.to_ndarray(format="rgb24") for f in frames]), [float(f.time) for f in frames]


def test_ground_truth_describes_the_file(clip100: SyntheticVideo) -> None:
    assert (clip100.fps, clip100.frame_count, clip100.width, clip100.height) == (25.0, 100, 128, 96)
    assert clip100.duration_s == pytest.approx(4.0)
    assert clip100.frame_times_s[:3] == (0.0, 0.04, 0.08)
    assert clip100.codec == "libx264"
    frames, times = decode_all(clip100.path)
    assert frames.shape == (100, 96, 128, 3)
    assert times == pytest.approx(list(clip100.frame_times_s))
    with av.open(str(clip100.path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"


def test_decoded_frames_match_the_renderer(clip100: SyntheticVideo) -> None:
    frames, _ = decode_all(clip100.path)
    renderer = SceneRenderer(clip100.width, clip100.height, seed=1, events=clip100.events)
    for i in (0, 30, 70, 99):
        rendered = renderer.render(i, clip100.frame_times_s[i]).astype(int)
        assert np.abs(frames[i].astype(int) - rendered).mean() < 8, f"frame {i} differs from its rendering"


def test_labels_follow_the_events(clip100: SyntheticVideo) -> None:
    labels = clip100.frame_labels()
    assert labels[24] == NORMAL and labels[25] == "flash" and labels[39] == "flash" and labels[40] == NORMAL
    assert labels[62] == NORMAL and labels[63] == "color_shift" and labels[79] == "color_shift"
    assert clip100.snippet_labels(16) == [NORMAL, "flash", "flash", "color_shift", "color_shift", NORMAL, NORMAL]


def test_same_seed_same_video_other_seed_other_video(tmp_path: Path) -> None:
    a = make_video(tmp_path / "a.mp4", frames=20, seed=7, events=[("flicker", 0.2, 0.6)])
    b = make_video(tmp_path / "b.mp4", frames=20, seed=7, events=[("flicker", 0.2, 0.6)])
    c = make_video(tmp_path / "c.mp4", frames=20, seed=8, events=[("flicker", 0.2, 0.6)])
    assert a.frame_times_s == b.frame_times_s and a.events == b.events
    np.testing.assert_array_equal(decode_all(a.path)[0], decode_all(b.path)[0])
    assert np.abs(decode_all(a.path)[0].astype(int) - decode_all(c.path)[0]).mean() > 10


@pytest.mark.parametrize("name", EVENT_CLASSES)
def test_every_event_class_changes_the_picture(name: str) -> None:
    quiet = SceneRenderer(64, 48, seed=3)
    loud = SceneRenderer(64, 48, seed=3, events=[Event(name, 0.0, 10.0)])
    diffs = [np.abs(loud.render(i, i / 25).astype(int) - quiet.render(i, i / 25)).mean() for i in range(8)]
    assert max(diffs) > 20, f"{name} is barely visible: {diffs}"


def test_event_classes_look_different_from_each_other() -> None:
    def signature(name: str) -> np.ndarray:
        renderer = SceneRenderer(64, 48, seed=3, events=[Event(name, 0.0, 10.0)])
        frames = np.stack([renderer.render(i, i / 25) for i in range(12)]).astype(float)
        brightness = frames.mean(axis=(1, 2, 3))
        return np.concatenate([frames.mean(axis=(0, 1, 2)), [brightness.std(), np.abs(np.diff(frames, axis=0)).mean()]])

    sigs = {name: signature(name) for name in EVENT_CLASSES}
    for i, a in enumerate(EVENT_CLASSES):
        for b in EVENT_CLASSES[i + 1 :]:
            assert np.abs(sigs[a] - sigs[b]).max() > 10, f"{a} and {b} look alike"


def test_variable_frame_rate_timestamps_are_written(tmp_path: Path) -> None:
    video = make_video(tmp_path / "vfr.mp4", frames=40, fps=25.0, vfr=True, seed=2)
    steps = np.diff(video.frame_times_s)
    assert video.vfr and len(set(np.round(steps, 6))) > 1
    assert set(np.round(steps * 25, 6)) <= {0.5, 1.0, 1.5}
    _, times = decode_all(video.path)
    assert times == pytest.approx(list(video.frame_times_s), abs=1e-6)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_stores_turned_frames_and_a_display_matrix(tmp_path: Path, rotation: int) -> None:
    video = make_video(tmp_path / f"rot{rotation}.mp4", frames=2, size=(64, 48), rotation=rotation)
    with av.open(str(video.path)) as container:
        frame = next(container.decode(video=0))
    assert (frame.rotation + rotation) % 360 == 0  # PyAV reports the counter-clockwise angle
    stored = (48, 64) if rotation == 180 else (64, 48)
    assert (frame.height, frame.width) == stored
    assert (video.width, video.height) == (64, 48)


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (2, 2)])
def test_odd_and_tiny_sizes(tmp_path: Path, size: tuple[int, int]) -> None:
    video = make_video(tmp_path / "tiny.mp4", frames=3, size=size)
    frames, _ = decode_all(video.path)
    assert frames.shape == (3, size[1], size[0], 3)


def test_mpeg4_fallback_codec(tmp_path: Path) -> None:
    video = make_video(tmp_path / "m4.mp4", frames=10, codec="mpeg4", vfr=True)
    with av.open(str(video.path)) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
    assert decode_all(video.path)[0].shape[0] == 10


def test_audio_only_and_empty_files(tmp_path: Path) -> None:
    with av.open(str(make_audio_only(tmp_path / "audio.mp4"))) as container:
        assert not container.streams.video and len(container.streams.audio) == 1
    with av.open(str(make_empty_video(tmp_path / "empty.mp4"))) as container:
        assert not container.streams.video


def test_random_events_do_not_overlap_and_are_reproducible() -> None:
    events = random_events(20.0, 5, seed=4)
    assert events == random_events(20.0, 5, seed=4)
    assert len(events) == 5 and all(e.class_name in EVENT_CLASSES for e in events)
    ordered = sorted(events, key=lambda e: e.start_s)
    assert all(a.end_s <= b.start_s for a, b in itertools.pairwise(ordered))
    assert ordered[0].start_s >= 0 and ordered[-1].end_s <= 20.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"frames": 0}, "frames"),
        ({"rotation": 45}, "rotation"),
        ({"size": (0, 10)}, "size"),
        ({"events": [("explosion", 0.0, 1.0)]}, "unknown event class"),
        ({"events": [("flash", 2.0, 1.0)]}, "start_s < end_s"),
    ],
)
def test_bad_arguments_are_rejected(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_video(tmp_path / "bad.mp4", **{"frames": 5, **kwargs})
