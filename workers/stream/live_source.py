"""A live video source read at its own pace in a thread, one frame per 16-frame snippet handed over, never queued up.

:class:`LiveSource` opens a URL (``rtsp``, ``rtsps``, ``http(s)`` incl. HLS, ``udp``, ``rtp``, ``srt``, ``tcp``…)
or a file with PyAV/FFmpeg and decodes every frame in a reader thread. Frames are grouped into snippets as
offline (snippet ``k`` of a connection is frames ``16k .. 16k+15``; the frame at the pick offset, 8 by default,
is kept), and each kept frame goes into a queue of ``queue_depth`` (1-2) places. When the consumer falls behind,
a newer snippet replaces the oldest unprocessed one and the replaced one is counted as dropped: latency and
memory stay bounded however slow the consumer is.

A source that ends or fails after having delivered frames reconnects with capped exponential backoff
(state ``reconnecting``); one that never delivers a frame within ``connect_timeout_s`` fails with a readable
reason. Snippet numbers and the stream clock go on across reconnections, and from a :class:`StreamClock` across
owners (a worker that takes a stream over continues its predecessor's clock). RTSP is read over the ``transport``
asked for (``tcp``, ``udp``, or ``auto``: TCP first, then UDP, the one that worked kept for reconnections).
Files end (``stopped``) instead of reconnecting; ``realtime=True`` paces a file by its timestamps, like a live
source (``vad watch --realtime``); without it a file is read as fast as the consumer goes and nothing is
dropped. The URL shown in states and logs is :func:`vad.net.redact.redact_url`'s (no credentials).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, Protocol, get_args

import av
import av.error
import numpy as np
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from model.benchmark.protocol import SNIPPET_FRAMES
from model.exceptions import first_line
from vad.net.redact import redact_text, redact_url, url_scheme
from vad.streams import RTSP_SCHEMES, RtspTransport
from workers.settings import WorkerSettings
from workers.video.plan import SnippetPlan, snap_time, upright
from workers.video.pyav_io import orientation

logger = logging.getLogger(__name__)

SourceState = Literal["connecting", "live", "reconnecting", "stopped", "failed"]

SkipFrames = Literal["none", "nonref"]

DEFAULT_FPS = 25.0
"""Frame rate assumed for a stream that announces none."""

MAX_BAD_PACKETS = 200
"""Undecodable packets in a row after which a connection is dropped and reopened."""

UNREACHABLE = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT})
"""Errors of opening that no other RTSP transport could avoid: the server itself cannot be reached."""


@dataclass(frozen=True)
class StreamClock:
    """Where a stream's clock and snippet numbers stand, for whoever reads the stream next to continue them.

    Attributes:
        origin_at: Unix time of stream time 0 (the first frame of the stream's first connection).
        next_index: The number of the next snippet.
        last_end_s: Stream time at which the last snippet ended.
    """

    origin_at: float
    next_index: int = 0
    last_end_s: float = 0.0


@dataclass(frozen=True)
class SourceFrame:
    """The kept frame of one snippet.

    Attributes:
        index: Snippet number in the stream (continues across reconnections).
        image: Upright RGB uint8 ``[H, W, 3]``.
        start_s: Stream time of the snippet's first frame: seconds since the first frame of the first connection;
            a reconnection (or a new owner, from a :class:`StreamClock`) continues the clock where the wall clock
            is (an outage shows as a gap).
        end_s: ``start_s + 16 / fps``.
        arrived_at: Unix time at which the kept frame was decoded.
        arrived_mono: The same moment on the monotonic clock (for lag and latency).
        connection: Connection number (1 for the first connection that delivered frames, 2 after a
            reconnection…).
        start_at: ``start_s`` as a Unix time: the clock's origin plus ``start_s``.
    """

    index: int
    image: np.ndarray
    start_s: float
    end_s: float
    arrived_at: float
    arrived_mono: float
    connection: int
    start_at: float | None = None


@dataclass(frozen=True)
class SourceChange:
    """The source entered a state.

    Attributes:
        state: ``connecting``, ``live``, ``reconnecting``, ``stopped`` or ``failed``.
        reason: Why (an error, ``end of file``…), ``None`` when there is nothing to say.
        at: Unix time of the change.
        connection: Connections that had delivered frames by then.
        mono: The same moment on the monotonic clock (orders changes with the frames' ``arrived_mono``).
    """

    state: SourceState
    reason: str | None
    at: float
    connection: int
    mono: float = 0.0


class SnippetQueue:
    """A bounded hand-over of newest snippets: when full, a put replaces the oldest entry (counted) or waits."""

    def __init__(self, depth: int) -> None:
        if not 1 <= depth <= 16:
            raise ValueError(f"queue depth must be in [1, 16], got {depth}")
        self.depth = depth
        self.dropped = 0
        self._items: deque[SourceFrame] = deque()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put_latest(self, item: SourceFrame) -> None:
        """Add ``item``; if the queue is full, the oldest entry is dropped."""
        with self._cond:
            if len(self._items) >= self.depth:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify_all()

    def put_wait(self, item: SourceFrame, stop: threading.Event, poll_s: float = 0.1) -> bool:
        """Add ``item`` once there is room; ``False`` when ``stop`` was set first."""
        with self._cond:
            while len(self._items) >= self.depth:
                if stop.is_set():
                    return False
                self._cond.wait(poll_s)
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> SourceFrame | None:
        """The oldest entry, waiting up to ``timeout`` seconds; ``None`` when none came."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class PacketTap(Protocol):
    """Sees every packet the reader demuxes (evidence's ring buffer), on the reader thread: keep it quick."""

    def begin(self, stream: VideoStream) -> None:
        """A connection opened with this video stream."""

    def set_origin(self, origin_s: float) -> None:
        """The stream time of timestamp 0 of the connection (known at its first frame)."""

    def push(self, packet: av.Packet) -> None: ...


class _Lost(Exception):
    """The connection ended (end of stream, read error or timeout); the message says how."""


class LiveSource:
    """Reads one URL or file in a thread; see the module docstring.

    Args:
        url: A URL FFmpeg can open, or a file path (``file://`` URLs too).
        realtime: Pace a file by its timestamps, like a live source (live sources pace themselves).
        frame_pick: Frame of each snippet kept: ``first``, ``middle`` or an offset 0-15.
        queue_depth: Snippets the queue holds (1-2 keeps latency lowest).
        connect_timeout_s: Seconds without a first frame after which the source fails.
        read_timeout_s: Seconds without data after which a connection counts as lost.
        backoff_initial_s: First wait before reconnecting; doubles on each failed attempt.
        backoff_max_s: Longest wait between attempts.
        options: FFmpeg options for opening.
        transport: RTSP's transport (``tcp``, ``udp``, ``auto``: TCP first, then UDP); ``None`` leaves it to
            FFmpeg. Ignored for URLs that are not RTSP.
        resume: The clock and snippet numbers to continue (a stream taken over from another reader); a new
            clock starting at the first frame when omitted.
        reconnect: Reopen after the source ends or fails (default: for URLs, not for files).
        drop: Replace unprocessed snippets when the consumer is behind (default: for URLs and paced files; a
            file read as fast as possible waits for the consumer instead).
        decode_threads: Decoder threads (slice threading); 0 leaves FFmpeg's default (slice threading, one
            thread per core).
        skip_frames: ``nonref``: frames no other frame refers to are not decoded unless one is a snippet's kept
            frame (see the module docstring); ``none``: every frame is decoded.
    """

    def __init__(self, url: str | Path, *, realtime: bool = False, frame_pick: str | int = "middle",
                 queue_depth: int = 1, connect_timeout_s: float = 30.0, read_timeout_s: float = 5.0,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0, options: dict[str, str] | None = None,
                 transport: str | None = None, resume: StreamClock | None = None, reconnect: bool | None = None,
                 drop: bool | None = None, decode_threads: int = 0, skip_frames: SkipFrames = "none") -> None:
        self.url = str(url)
        self.display_url = redact_url(self.url)
        self.is_file = url_scheme(self.url) == "file"
        if self.is_file and self.url.lower().startswith("file://"):
            self.url = self.url[len("file://"):]
        self.realtime = realtime
        self.plan = SnippetPlan.create(SNIPPET_FRAMES, frame_pick)  # type: ignore[arg-type]
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.options = dict(options or {})
        self.transport = transport if url_scheme(self.url) in RTSP_SCHEMES else None
        if self.transport is not None and self.transport not in get_args(RtspTransport):
            raise ValueError(f"RTSP transport must be tcp, udp or auto, got {transport!r}")
        self.rtsp_transport: str | None = None  # the transport of the last connection that delivered frames
        self._opened_with: str | None = None
        self.reconnect = (not self.is_file) if reconnect is None else reconnect
        self.drop = (not self.is_file or realtime) if drop is None else drop
        self.queue = SnippetQueue(queue_depth)
        if skip_frames not in get_args(SkipFrames):
            raise ValueError(f"skip_frames must be none or nonref, got {skip_frames!r}")
        self.decode_threads, self.skip_frames = decode_threads, skip_frames
        self.fps: float | None = None
        self.width: int | None = None
        self.height: int | None = None
        self.codec: str | None = None
        self.frames_read = 0
        self.snippets_read = 0
        self.connection = 0
        self.state: SourceState = "connecting"
        self.reason: str | None = None
        self.since = time.time()
        self._changes: deque[SourceChange] = deque(maxlen=256)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_mono = 0.0
        self._next_index = 0
        self._last_end_s = 0.0
        self._clock_origin: float | None = None  # stream time 0 on the monotonic clock
        self.clock_origin_at: float | None = None  # the same as a Unix time
        if resume is not None:
            self._next_index, self._last_end_s = resume.next_index, resume.last_end_s
            self.clock_origin_at = resume.origin_at
            self._clock_origin = time.monotonic() - (time.time() - resume.origin_at)
        self._announced = False
        self.packet_tap: PacketTap | None = None

    @classmethod
    def from_settings(cls, url: str | Path, settings: WorkerSettings, *, realtime: bool = False,
                      transport: str | None = None, resume: StreamClock | None = None) -> LiveSource:
        """A source configured by the ``stream_*`` worker settings (``transport``: the stream's own, else
        ``stream_rtsp_transport``)."""
        pick = settings.frame_pick if settings.frame_pick != "mean" else "middle"
        return cls(url, realtime=realtime, frame_pick=pick, queue_depth=settings.stream_queue_depth,
                   connect_timeout_s=settings.stream_connect_timeout_s, read_timeout_s=settings.stream_read_timeout_s,
                   backoff_initial_s=settings.stream_backoff_initial_s, backoff_max_s=settings.stream_backoff_max_s,
                   transport=transport or settings.stream_rtsp_transport, resume=resume,
                   decode_threads=settings.stream_decode_threads, skip_frames=settings.stream_skip_frames)

    @property
    def clock(self) -> StreamClock | None:
        """Where the clock and snippet numbers stand (``None`` before the first frame of a new stream)."""
        if self.clock_origin_at is None:
            return None
        return StreamClock(self.clock_origin_at, self._next_index, self._last_end_s)

    # -- the consumer's side ------------------------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Snippets replaced in the queue before the consumer took them."""
        return self.queue.dropped

    @property
    def finished(self) -> bool:
        """The reader has ended (stopped or failed) and every snippet it read has been taken."""
        return self.state in ("stopped", "failed") and len(self.queue) == 0

    def start(self) -> LiveSource:
        """Start the reader thread (once)."""
        if self._thread is None:
            self._started_mono = time.monotonic()
            self._thread = threading.Thread(target=self._run, name=f"vad-source {self.display_url}", daemon=True)
            self._thread.start()
        return self

    def stop(self, join_s: float | None = None) -> None:
        """Ask the reader to stop and wait for it (up to ``join_s``, default the read timeout plus a second)."""
        self._stop.set()
        self.queue.wake()
        if self._thread is not None:
            self._thread.join(self.read_timeout_s + 1.0 if join_s is None else join_s)

    def __enter__(self) -> LiveSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def get(self, timeout: float = 0.2) -> SourceFrame | None:
        """The next snippet's frame, waiting up to ``timeout`` seconds."""
        return self.queue.get(timeout)

    def stream_time_now(self) -> float | None:
        """The stream time now (``None`` before the first frame): how a second reader of the same camera places
        its packets on this stream's clock."""
        origin = self._clock_origin
        return None if origin is None else time.monotonic() - origin

    def changes(self) -> list[SourceChange]:
        """The state changes since the last call, oldest first."""
        out = []
        while self._changes:
            out.append(self._changes.popleft())
        return out

    # -- the reader thread --------------------------------------------------------------------------------------

    def _set(self, state: SourceState, reason: str | None = None) -> None:
        if state == self.state and reason == self.reason and self._announced:
            return
        self._announced = True
        self.state, self.reason, self.since = state, reason, time.time()
        self._changes.append(SourceChange(state, reason, self.since, self.connection, time.monotonic()))
        level = logging.WARNING if state in ("reconnecting", "failed") else logging.INFO
        logger.log(level, "source %s: %s%s", self.display_url, state, f" ({reason})" if reason else "")
        self.queue.wake()

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug must not leave the consumer waiting on a silent source
            logger.exception("source %s: reader crashed", self.display_url)
            self._set("failed", f"internal error: {type(exc).__name__}: {exc}")

    def _loop(self) -> None:
        delay = self.backoff_initial_s
        ever_live = False
        self._set("connecting")
        while not self._stop.is_set():
            delivered, reason = self._read_once()
            if self._stop.is_set():
                break
            ever_live = ever_live or delivered
            if not self.reconnect or (self.is_file and ever_live):
                self._set("stopped" if ever_live else "failed", reason)
                return
            if not ever_live and time.monotonic() - self._started_mono >= self.connect_timeout_s:
                self._set("failed", f"could not read {self.display_url} within {self.connect_timeout_s:g} s: {reason}")
                return
            if delivered:
                delay = self.backoff_initial_s
            self._set("reconnecting" if ever_live else "connecting", reason)
            wait = delay
            if not ever_live:  # never wait past the connect deadline
                wait = min(wait, max(0.0, self.connect_timeout_s - (time.monotonic() - self._started_mono)))
            if self._stop.wait(wait):
                break
            delay = min(delay * 2.0, self.backoff_max_s)
        self._set("stopped", "stopped")

    def _open_timeout(self) -> float:
        timeout = self.read_timeout_s
        if self.state == "connecting":  # before the first frame, the connect deadline bounds the open too
            left = self.connect_timeout_s - (time.monotonic() - self._started_mono)
            timeout = max(0.5, min(timeout, left))
        return timeout

    def _open(self) -> InputContainer:
        target = self.url
        if self.is_file:
            path = Path(self.url)
            if not path.is_file():
                raise _Lost(f"{path.name}: {'it is a directory' if path.is_dir() else 'no such file'}")
            target = str(path)
        failures = []
        for transport in self._transports():
            options = self.options if transport is None else {**self.options, "rtsp_transport": transport}
            over = "" if transport is None else f" over {transport.upper()}"
            timeout = self._open_timeout()
            try:
                container = av.open(target, mode="r", options=options, timeout=(timeout, self.read_timeout_s),
                                    metadata_errors="replace")
            except av.error.ExitError:  # FFmpeg's interrupt: our timeout
                failures.append(f"cannot open it{over}: no answer within {timeout:.3g} s")
            except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
                code = getattr(exc, "errno", None)
                # FFmpeg turns RTSP's "461 Unsupported transport" into EPROTONOSUPPORT: say it in RTSP's words
                failures.append(f"cannot open it{over}: " + (
                    "the server does not offer this transport (461 Unsupported transport)"
                    if transport is not None and code == errno.EPROTONOSUPPORT else first_line(exc, 300)))
                if code not in UNREACHABLE:
                    continue  # the server answered: another transport may suit it
            else:
                self._opened_with = transport
                return container
            break  # no server to answer (RTSP's own connection is TCP whatever the transport): none would help
        raise _Lost("; ".join(failures))

    def _transports(self) -> list[str | None]:
        """The RTSP transports to try, in order (``[None]``: FFmpeg's choice, or not RTSP)."""
        if self.transport != "auto":
            return [self.transport]
        if self.rtsp_transport is not None:  # auto keeps what worked
            return [self.rtsp_transport]
        return ["tcp"] if url_scheme(self.url) == "rtsps" else ["tcp", "udp"]

    def _read_once(self) -> tuple[bool, str]:
        """One connection: open, decode and hand over snippets until it ends.

        Returns:
            Whether a frame came, and how the connection ended.
        """
        delivered = False
        try:
            with self._open() as container:
                stream = _video_stream(container)
                self._describe(stream)
                if self.decode_threads:
                    stream.thread_type, stream.thread_count = "SLICE", self.decode_threads
                if self.packet_tap is not None:
                    self.packet_tap.begin(stream)
                clock: _Clock | None = None

                def gate(packet: av.Packet) -> None:
                    if clock is not None:
                        clock.gate(packet)

                skip = gate if self.skip_frames == "nonref" else None
                for frame in _frames(container, stream, self._stop, self.read_timeout_s, self.packet_tap, skip):
                    if clock is None:
                        delivered = True
                        self.connection += 1
                        self.rtsp_transport = self._opened_with
                        clock = _Clock(self, stream)
                        self._set("live")
                    clock.take(frame)
        except _Lost as lost:
            return delivered, redact_text(str(lost), self.url)
        return delivered, "end of file" if self.is_file else "the source ended (end of stream)"

    def _describe(self, stream: VideoStream) -> None:
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        self.fps = fps if 1.0 <= fps <= 240.0 else DEFAULT_FPS
        ctx = stream.codec_context
        self.width, self.height = (ctx.width or None), (ctx.height or None)
        self.codec = ctx.name

    def hand_over(self, item: SourceFrame) -> None:
        self.snippets_read += 1
        if self.drop:
            self.queue.put_latest(item)
        else:
            self.queue.put_wait(item, self._stop)


class _Clock:
    """Groups one connection's frames into snippets, stamps their stream times and paces a file if asked.

    Frame ``i`` of the connection belongs to snippet ``i // 16``; a snippet's kept frame is its first decoded frame
    at position ``plan.offset`` or later (the frame at the offset whenever it was decoded). ``i`` counts the
    decoded frames, or, when non-reference frames are skipped (:meth:`gate`), comes from the frame's timestamp
    (``round(t * fps)``, increasing), so that skipped frames still take their places.
    """

    def __init__(self, source: LiveSource, stream: VideoStream) -> None:
        self.source = source
        self.stream = stream
        self.fps = source.fps or DEFAULT_FPS
        self.time_base: Fraction | None = stream.time_base
        self.first_pts: int | None = None
        self.by_pts = source.skip_frames != "none"
        offset = source.plan.offset  # a live source never picks "all" frames (mean is read as middle)
        self.pick = SNIPPET_FRAMES // 2 if offset is None else offset
        self.seen = 0
        self.last_index = -1
        self.skipping = False
        self.rotation: tuple[int, bool] | None = None  # clockwise degrees and mirror, from the first frame
        # a reconnection (or a new owner) continues the stream clock from the wall clock: the outage shows as a gap
        now = time.monotonic()
        if source._clock_origin is None:
            source._clock_origin, source.clock_origin_at = now, time.time()
        self.offset = max(source._last_end_s, now - source._clock_origin)  # 0 for a new stream's first connection
        self.pace_origin: float | None = None
        self.snippet = -1
        self.kept = False
        self.snippet_start = 0.0
        self.snippet_index = 0

    def _since_first(self, pts: int | None) -> float | None:
        if pts is None or self.time_base is None:
            return None
        if self.first_pts is None:
            self.first_pts = pts
            if self.source.packet_tap is not None:
                self.source.packet_tap.set_origin(self.offset - float(pts * self.time_base))
        return float((pts - self.first_pts) * self.time_base)

    def index(self, frame: VideoFrame) -> int:
        """The frame's number in the connection (see the class docstring)."""
        t = self._since_first(frame.pts)
        i = self.seen if not self.by_pts or t is None else max(round(t * self.fps), self.last_index + 1)
        self.seen += 1
        self.last_index = i
        return i

    def gate(self, packet: av.Packet) -> None:
        """Before ``packet`` is decoded: skip it if it is a non-reference frame that no snippet keeps (the decoder
        decides what is a reference; the frame at a snippet's pick offset, and any packet without a timestamp or
        before the first frame, are decoded)."""
        due = True
        if self.first_pts is not None and packet.pts is not None and self.time_base is not None:
            i = round(float((packet.pts - self.first_pts) * self.time_base) * self.fps)
            due = i % SNIPPET_FRAMES == self.pick
        if due == self.skipping:
            self.skipping = not due
            self.stream.codec_context.skip_frame = "NONREF" if self.skipping else "DEFAULT"

    def take(self, frame: VideoFrame) -> None:
        i = self.index(frame)
        self.source.frames_read += 1
        t = snap_time(self._since_first(frame.pts), i, self.fps)
        if self.source.realtime:
            self._pace(t)
        snippet, k = divmod(i, SNIPPET_FRAMES)
        if snippet != self.snippet:
            self.snippet, self.kept = snippet, False
            self.snippet_start = self.offset + snap_time(t - k / self.fps, snippet * SNIPPET_FRAMES, self.fps)
            self.snippet_index = self.source._next_index
            self.source._next_index += 1
        if self.kept or k < self.pick:
            return
        self.kept = True
        if self.rotation is None:
            self.rotation = orientation(frame, self.stream)
        image = upright(frame.to_ndarray(format="rgb24"), *self.rotation)
        end_s = self.snippet_start + SNIPPET_FRAMES / self.fps
        self.source._last_end_s = end_s
        origin_at = self.source.clock_origin_at
        self.source.hand_over(SourceFrame(
            index=self.snippet_index, image=image, start_s=self.snippet_start, end_s=end_s, arrived_at=time.time(),
            arrived_mono=time.monotonic(), connection=self.source.connection,
            start_at=None if origin_at is None else origin_at + self.snippet_start))

    def _pace(self, t: float) -> None:
        now = time.monotonic()
        if self.pace_origin is None:
            self.pace_origin = now - t
        wait = self.pace_origin + t - now
        if wait > 0:
            self.source._stop.wait(wait)


def _video_stream(container: InputContainer) -> VideoStream:
    stream = container.streams.best("video")
    if not isinstance(stream, VideoStream) or stream.codec_context is None:
        raise _Lost("it has no video stream this FFmpeg can decode")
    return stream


def _frames(container: InputContainer, stream: VideoStream, stop: threading.Event, timeout_s: float,
            tap: PacketTap | None = None, gate: Callable[[av.Packet], None] | None = None) -> Iterator[VideoFrame]:
    """Decode ``stream`` until the end of the connection, skipping packets the decoder rejects (``gate`` sees each
    packet before the decoder: it may tell the decoder to skip it)."""
    bad = 0
    packets = container.demux(stream)
    while not stop.is_set():
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.ExitError as exc:  # FFmpeg's interrupt: our read timeout
            raise _Lost(f"no data for {timeout_s:g} s") from exc
        except (av.error.FFmpegError, OSError) as exc:
            raise _Lost(f"read error: {first_line(exc, 300)}") from exc
        if tap is not None:
            tap.push(packet)
        if gate is not None:
            gate(packet)
        try:
            frames = stream.decode(packet)
        except av.error.FFmpegError as exc:
            bad += 1
            if bad >= MAX_BAD_PACKETS:
                raise _Lost(f"{bad} packets in a row could not be decoded: {first_line(exc, 300)}") from exc
            continue
        bad = 0
        yield from frames


