"""The ring buffer's bounds and its clips, the cut of a stored video, snapshots (issue 19 item 1).

Small H.264 videos made with FFmpeg (skipped without it); every clip is checked with ffprobe and decoded.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from workers.evidence.clip import BufferedPacket, cut_file, write_mp4
from workers.evidence.ring import PacketRing
from workers.evidence.snapshot import frame_at, jpeg

FPS, GOP = 25, 25  # a keyframe every second

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="ffmpeg/ffprobe not installed: run `bash scripts/ensure-ffmpeg.sh`")


def _encode(path: Path, *extra: str, source: str = f"testsrc=size=160x120:rate={FPS}:duration=12") -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-c:v", "libx264", "-preset",
                    "ultrafast", "-g", str(GOP), "-keyint_min", str(GOP), "-sc_threshold", "0", "-pix_fmt", "yuv420p",
                    *extra, str(path)], check=True, timeout=60)
    return path


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s as a camera sends it: no B-frames, a keyframe every second."""
    return _encode(tmp_path_factory.mktemp("evidence") / "camera.mp4", "-bf", "0")


@pytest.fixture(scope="module")
def bframes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s with B-frames (decoding order differs from presentation order), as an uploaded file may be."""
    return _encode(tmp_path_factory.mktemp("evidence") / "bframes.mp4", "-bf", "2")


def _probe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name,width,height,"
                          "profile,pix_fmt,nb_frames", "-of", "json", str(path)], check=True, capture_output=True,
                         text=True, timeout=30).stdout
    return json.loads(out)


def _decodes(path: Path) -> None:
    result = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def _feed(ring: PacketRing, video: Path, until_s: float = 1e9) -> list[BufferedPacket]:
    """Push ``video``'s packets into ``ring`` as a live reader would; the packets pushed."""
    pushed = []
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        ring.begin(stream)
        ring.set_origin(-float((stream.start_time or 0) * stream.time_base))
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if float(packet.pts * packet.time_base) > until_s:
                break
            pushed.append(BufferedPacket.of(packet))
            ring.push(packet)
    return pushed


def test_a_clip_cut_from_the_ring_is_a_playable_mp4_of_the_same_packets(camera: Path, tmp_path: Path) -> None:
    ring = PacketRing(pre_roll_s=5.0, max_bytes=64 << 20)
    ring.pin("event", 4.4 - 2.0)  # an event from 4.4 s, pre-roll 2 s: from the keyframe at 2 s
    pushed = _feed(ring, camera)
    clip = ring.cut(4.4 - 2.0, 7.3 + 2.0)  # post-roll 2 s after 7.3 s
    assert clip is not None and not clip.truncated
    assert clip.start_s == pytest.approx(2.0) and clip.packets[0].keyframe
    out = tmp_path / "clip.mp4"
    with clip.template.stream() as template:
        write_mp4(template, clip.packets, out)
    probe, original = _probe(out), _probe(camera)
    duration = float(probe["format"]["duration"])
    assert 9.3 - 2.0 <= duration <= 9.3 - 2.0 + 1.0 / FPS + 0.01  # pre-roll + event + post-roll, from the keyframe
    keep = ("codec_name", "width", "height", "profile", "pix_fmt")
    assert {k: probe["streams"][0][k] for k in keep} == {k: original["streams"][0][k] for k in keep}
    _decodes(out)
    with av.open(str(out)) as mp4:  # not re-encoded: the very packets, byte for byte
        remuxed = [bytes(p) for p in mp4.demux(video=0) if p.size]
    first = next(i for i, p in enumerate(pushed) if p.data == clip.packets[0].data)
    assert remuxed == [p.data for p in pushed[first:first + len(remuxed)]]
    assert len(remuxed) == int((9.3 - 2.0) * FPS) + 1  # the frames shown from 2.00 s through 9.28 s


def test_at_rest_the_ring_holds_the_pre_roll_and_one_gop(camera: Path) -> None:
    ring = PacketRing(pre_roll_s=3.0, max_bytes=64 << 20)
    pushed = _feed(ring, camera)
    assert 3.0 <= ring.seconds <= 3.0 + GOP / FPS
    kept = ring.cut(0.0, 100.0)
    assert kept is not None and kept.truncated and kept.packets[0].keyframe
    assert ring.nbytes == sum(len(p.data) for p in kept.packets) < sum(len(p.data) for p in pushed)


def test_a_scorer_behind_the_reader_still_gets_its_whole_pre_roll(camera: Path) -> None:
    """The reader is 4 s ahead of the scorer (a loaded machine): an event the scorer finds at 5 s, opened when the
    newest packet is at 9 s, still has the 2 s before it; without the scorer's position the ring had dropped them."""
    lagging = PacketRing(pre_roll_s=2.0, max_bytes=64 << 20)
    lagging.scored(5.0)
    _feed(lagging, camera, until_s=9.0)
    lagging.pin("event", 5.0 - 2.0)
    clip = lagging.cut(3.0, 6.0)
    assert clip is not None and not clip.truncated and clip.start_s == pytest.approx(3.0)
    assert lagging.seconds <= 9.0 - 3.0 + 0.05  # and no more than that: from the keyframe at 3 s
    ahead = PacketRing(pre_roll_s=2.0, max_bytes=64 << 20)  # no scorer's position: the pre-roll before 9 s
    _feed(ahead, camera, until_s=9.0)
    clip = ahead.cut(3.0, 6.0)
    assert clip is not None and clip.truncated


def test_the_byte_cap_wins_over_a_pin_and_the_clip_says_it_was_truncated(camera: Path) -> None:
    everything = sum(len(p.data) for p in _feed(PacketRing(100.0, 64 << 20), camera))
    cap = everything // 4
    ring = PacketRing(pre_roll_s=2.0, max_bytes=cap)
    ring.pin("long event", 0.0)
    _feed(ring, camera)
    assert ring.nbytes <= cap and ring.dropped_for_bytes > 0
    clip = ring.cut(0.0, 12.0)
    assert clip is not None and clip.truncated and clip.start_s > 0.0 and clip.packets[0].keyframe


def test_a_pin_keeps_the_event_until_it_is_cut_then_the_ring_shrinks(camera: Path) -> None:
    ring = PacketRing(pre_roll_s=1.0, max_bytes=64 << 20)
    ring.pin("event", 1.5)
    _feed(ring, camera, until_s=10.0)
    held = ring.seconds
    assert held >= 10.0 - 1.0 - 0.05  # from the keyframe at 1 s
    unpinned = PacketRing(1.0, 64 << 20)  # the same packets without the pin: trimmed to the pre-roll
    _feed(unpinned, camera, until_s=10.0)
    assert unpinned.seconds < held and unpinned.seconds <= 1.0 + GOP / FPS


def test_a_stored_video_with_b_frames_is_cut_from_the_keyframe_before_without_re_encoding(bframes: Path,
                                                                                           tmp_path: Path) -> None:
    out = tmp_path / "cut.mp4"
    cut = cut_file(bframes, 4.3, 8.5, out)
    assert cut.start_s == pytest.approx(4.0)  # the keyframe at or before 4.3 s
    # packets are taken in decoding order up to 8.5 s: with B-frames a few shown later come with them
    assert 8.5 <= cut.end_s <= 8.5 + 5.0 / FPS
    probe = _probe(out)
    assert 8.5 - 4.0 - 0.01 <= float(probe["format"]["duration"]) <= 8.5 - 4.0 + 6.0 / FPS
    assert probe["streams"][0]["codec_name"] == "h264" and probe["streams"][0]["width"] == 160
    _decodes(out)


def test_snapshot_is_the_frame_shown_at_the_peak_and_the_thumbnail_is_smaller(tmp_path: Path) -> None:
    colours = (f"color=c=red:size=640x360:rate={FPS}:duration=4[a];color=c=blue:size=640x360:rate={FPS}:duration=4[b];"
               "[a][b]concat=n=2:v=1")
    video = _encode(tmp_path / "colours.mp4", source=colours)
    for t, channel in ((3.0, 0), (4.5, 2)):
        image = frame_at(video, t)
        assert image.shape == (360, 640, 3)
        assert int(np.argmax(image.reshape(-1, 3).mean(axis=0))) == channel, t
    picture = np.zeros((360, 640, 3), np.uint8)
    big, small = Image.open(_as_file(tmp_path / "a.jpg", jpeg(picture))), \
        Image.open(_as_file(tmp_path / "b.jpg", jpeg(picture, 320)))
    assert big.size == (640, 360) and small.size == (320, 180)
    assert Image.open(_as_file(tmp_path / "c.jpg", jpeg(picture[:90, :160], 320))).size == (160, 90)  # never up


def _as_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_dts_are_made_monotonic_and_rebased_to_zero(camera: Path, tmp_path: Path) -> None:
    with av.open(str(camera)) as container:
        stream = container.streams.video[0]
        packets = [BufferedPacket.of(p) for p in container.demux(stream) if p.size][:50]
        shifted = [BufferedPacket(p.data, (p.pts or 0) + 900000, (p.dts or 0) + 900000, p.duration, p.keyframe,
                                  p.time_base) for p in packets]
        # a repeated dts, as a camera's clock sometimes sends
        shifted[10] = BufferedPacket(shifted[10].data, shifted[10].pts, shifted[9].dts, shifted[10].duration,
                                     False, shifted[10].time_base)
        out = tmp_path / "rebased.mp4"
        assert write_mp4(stream, shifted, out) == 50
    with av.open(str(out)) as mp4:
        dts = [p.dts for p in mp4.demux(video=0) if p.size]
    assert dts[0] == 0 and all(b > a for a, b in itertools.pairwise(dts))
    _decodes(out)
