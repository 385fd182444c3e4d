"""LiveSource on real files and refused URLs; the newest-wins queue."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from workers.stream.live_source import LiveSource, SnippetQueue, SourceFrame, StreamClock
from workers.synthetic import SyntheticVideo, make_video
from workers.video import iter_snippets


def drain(source: LiveSource, limit_s: float = 30.0) -> list[SourceFrame]:
    """Every frame the source hands over until it ends (bounded in time)."""
    frames = []
    deadline = time.monotonic() + limit_s
    while not source.finished and time.monotonic() < deadline:
        frame = source.get(timeout=0.1)
        if frame is not None:
            frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SyntheticVideo:
    return make_video(tmp_path_factory.mktemp("src") / "clip.mp4", frames=16 * 12 + 5, fps=50.0, size=(64, 48))


def frame(index: int) -> SourceFrame:
    return SourceFrame(index, np.zeros((1, 1, 3), np.uint8), index * 0.5, index * 0.5 + 0.5, 0.0, 0.0, 1)


def test_the_queue_keeps_the_newest_and_counts_what_it_replaced() -> None:
    q = SnippetQueue(2)
    for i in range(5):
        q.put_latest(frame(i))
    assert q.dropped == 3 and len(q) == 2
    got = [q.get(0.0), q.get(0.0), q.get(0.0)]
    assert [f.index if f else None for f in got] == [3, 4, None]


def test_a_waiting_put_waits_for_room_and_gives_up_when_stopped() -> None:
    q, stop = SnippetQueue(1), threading.Event()
    q.put_latest(frame(0))
    threading.Timer(0.2, lambda: q.get(0.0)).start()
    assert q.put_wait(frame(1), stop) and q.dropped == 0
    threading.Timer(0.2, stop.set).start()
    assert not q.put_wait(frame(2), stop)


def test_a_file_read_unpaced_gives_every_snippet_with_the_offline_frames_and_times(clip: SyntheticVideo) -> None:
    with LiveSource(clip.path, queue_depth=1) as source:
        frames = drain(source)
    assert source.state == "stopped" and source.reason == "end of file" and source.dropped == 0
    assert (source.fps, source.width, source.height) == (50.0, 64, 48)
    with iter_snippets(clip.path, frame_pick="middle", keep_tail=False, backend="pyav") as stream:
        offline = [(int(i), s, e, img) for b in stream
                   for i, s, e, img in zip(b.snippet_index, b.start_s, b.end_s, b.frames, strict=True)]
    # the partial tail (5 frames) has no frame 8: a live source never waits for a snippet's end
    assert [f.index for f in frames] == [o[0] for o in offline] == list(range(12))
    assert [f.start_s for f in frames] == pytest.approx([o[1] for o in offline])
    assert [f.end_s for f in frames] == pytest.approx([o[2] for o in offline])
    assert all(np.array_equal(f.image, o[3]) for f, o in zip(frames, offline, strict=True))


@pytest.mark.parametrize("pick", ["middle", 3])
def test_skipping_non_reference_frames_keeps_the_kept_frames(clip: SyntheticVideo, pick: str | int) -> None:
    import av
    from av.video.frame import PictureType

    with av.open(str(clip.path)) as container:
        kinds = {PictureType(frame.pict_type) for frame in container.decode(video=0)}
    assert PictureType.B in kinds  # libx264 with B-frames: some frames are references of none
    read = {}
    for skip in ("none", "nonref"):
        with LiveSource(clip.path, frame_pick=pick, skip_frames=skip, decode_threads=1) as source:
            read[skip] = (drain(source), source.frames_read)
    (full, decoded_all), (skipped, decoded_some) = read["none"], read["nonref"]
    assert decoded_all == clip.frame_count and decoded_some < 0.75 * decoded_all
    assert [f.index for f in skipped] == [f.index for f in full] == list(range(12 if pick == "middle" else 13))
    assert [(f.start_s, f.end_s) for f in skipped] == [(f.start_s, f.end_s) for f in full]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(full, skipped, strict=True))


def test_a_paced_file_takes_its_duration_and_drops_what_a_slow_consumer_misses(clip: SyntheticVideo) -> None:
    started = time.monotonic()
    with LiveSource(clip.path, realtime=True, queue_depth=1) as source:
        taken = []
        while not source.finished and time.monotonic() - started < 30:
            got = source.get(timeout=0.1)
            if got is not None:
                taken.append(got)
                time.sleep(0.9)  # a consumer three snippets (0.96 s) slower than the source
    elapsed = time.monotonic() - started
    assert elapsed >= clip.duration_s - 0.2
    assert source.dropped > 0 and source.dropped + len(taken) == source.snippets_read == 12
    assert [f.index for f in taken] == sorted({f.index for f in taken})


def test_a_missing_file_fails_at_once_with_its_name(tmp_path: Path) -> None:
    with LiveSource(tmp_path / "nope.mp4") as source:
        assert drain(source, 5.0) == []
    assert source.state == "failed" and "nope.mp4: no such file" in (source.reason or "")


def test_a_url_that_never_connects_fails_after_the_connect_timeout_without_its_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    url = f"rtsp://admin:hunter2@127.0.0.1:{port}/cam"
    started = time.monotonic()
    with LiveSource(url, connect_timeout_s=1.5, backoff_initial_s=0.2) as source:
        assert drain(source, 10.0) == []
    elapsed = time.monotonic() - started
    changes = source.changes()
    assert source.state == "failed" and 1.5 <= elapsed < 4.0
    assert f"could not read rtsp://***@127.0.0.1:{port}/cam within 1.5 s" in (source.reason or "")
    assert "refused" in (source.reason or "").lower()
    assert changes[0].state == "connecting" and changes[-1].state == "failed"
    assert all("hunter2" not in (c.reason or "") for c in changes) and "hunter2" not in source.display_url


def test_a_new_stream_starts_its_clock_at_its_first_frame(clip: SyntheticVideo) -> None:
    before = time.time()
    with LiveSource(clip.path) as source:
        frames = drain(source)
    origin = source.clock_origin_at
    assert origin is not None and before <= origin <= frames[0].arrived_at
    assert frames[0].start_s == 0.0 and [f.start_at for f in frames] == pytest.approx([origin + f.start_s
                                                                                       for f in frames])
    clock = source.clock
    assert clock is not None and clock.origin_at == origin and clock.last_end_s == frames[-1].end_s
    assert clock.next_index == 13  # the partial tail took number 12 (never handed over: no frame 8)


def test_a_source_resumed_from_a_clock_numbers_on_and_counts_the_time_no_one_read_it(clip: SyntheticVideo) -> None:
    """A new owner of a stream continues its predecessor's clock: the gap shows, as after a reconnection."""
    origin = time.time() - 100.0  # the stream started 100 s ago; its last snippet ended at 90 s
    with LiveSource(clip.path, resume=StreamClock(origin, next_index=50, last_end_s=90.0)) as source:
        frames = drain(source)
    assert [f.index for f in frames] == list(range(50, 62))
    assert 100.0 <= frames[0].start_s < 100.0 + 5.0  # the wall clock's 100 s (plus this test's own time)
    assert [f.start_s - frames[0].start_s for f in frames] == pytest.approx([i * 0.32 for i in range(12)])
    assert [f.start_at for f in frames] == pytest.approx([origin + f.start_s for f in frames])
    assert source.clock_origin_at == origin

    # a clock ahead of the wall clock (a source faster than real time) never goes back
    with LiveSource(clip.path, resume=StreamClock(time.time() - 10.0, next_index=7, last_end_s=30.0)) as ahead:
        first = drain(ahead)[0]
    assert first.index == 7 and first.start_s == pytest.approx(30.0)


def test_the_rtsp_transport_applies_to_rtsp_urls_only() -> None:
    assert LiveSource("rtsp://127.0.0.1/x", transport="tcp").transport == "tcp"
    assert LiveSource("udp://127.0.0.1:5000", transport="tcp").transport is None
    with pytest.raises(ValueError, match="tcp, udp or auto"):
        LiveSource("rtsp://127.0.0.1/x", transport="http")


def test_auto_does_not_try_udp_when_the_server_cannot_be_reached() -> None:
    """RTSP's own connection is TCP whatever carries the media: a refused connection is refused for UDP too."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    with LiveSource(f"rtsp://127.0.0.1:{port}/cam", transport="auto", connect_timeout_s=1.0,
                    backoff_initial_s=0.2) as source:
        assert drain(source, 10.0) == []
    assert source.state == "failed" and "cannot open it over TCP: Connection refused" in (source.reason or "")
    assert "UDP" not in (source.reason or "")
