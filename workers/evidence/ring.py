"""A live stream's recent compressed packets, bounded in seconds and in bytes, cut into clips without decoding.

The ring keeps whole GOPs (from a keyframe to the next): at rest, from the keyframe at or before *pre-roll*
seconds before where the scorer is (:meth:`PacketRing.scored`: the earliest time an event not yet opened can start,
which trails the newest packet by the scoring lag), so its memory is about ``(pre_roll + lag + one GOP) × bitrate``
(5 s + a 2 s GOP at 4 Mbit/s: 3.5 MB; a loaded machine's lag adds its seconds, and a clip still gets its whole
pre-roll). An
open event **pins** the ring at its start minus the pre-roll until its clip is cut (after the post-roll), so
during an event it holds ``pre_roll + event + post_roll`` seconds. ``max_bytes`` caps it whatever the pins
(``VAD_EVIDENCE_BUFFER_MB``): the oldest GOPs go first, and a clip cut from what is left begins later than asked
(its meta says ``clip_truncated``). The newest GOP is never dropped.

Times are the stream's seconds (:class:`~workers.stream.live_source.SourceFrame.start_s`): a connection's packets
map to them once its origin is known (``set_origin``: the stream time of timestamp 0). A new connection starts
a new segment (an event never spans a reconnection: the runner closes it); while an event is pinned, the previous
connection's packets stay until its clip is cut from them.
All methods are thread-safe: the reader thread pushes, the evidence thread cuts.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from av.packet import Packet
from av.video.stream import VideoStream

from workers.evidence.clip import BufferedPacket, CodecTemplate


@dataclass
class _Segment:
    """One connection's packets."""

    stream: VideoStream | None
    template: CodecTemplate | None = None
    origin_s: float | None = None
    packets: deque[BufferedPacket] = field(default_factory=deque)

    def time(self, packet: BufferedPacket) -> float | None:
        return None if self.origin_s is None else self.origin_s + float(packet.ts * packet.time_base)


@dataclass(frozen=True)
class ClipPackets:
    """A clip's packets (from a keyframe) and the codec parameters to remux them with."""

    template: CodecTemplate
    packets: list[BufferedPacket]
    start_s: float
    end_s: float
    truncated: bool


class PacketRing:
    """See the module docstring.

    Args:
        pre_roll_s: Seconds kept before now at rest (from the keyframe before).
        max_bytes: Packet bytes kept at most.
    """

    def __init__(self, pre_roll_s: float, max_bytes: int) -> None:
        self.pre_roll_s, self.max_bytes = pre_roll_s, max_bytes
        self.nbytes = 0
        self.dropped_for_bytes = 0
        self.generation = 0
        """Connections begun: a pending clip whose connection ended is cut from what that one left."""
        self._segment = _Segment(None)
        self._previous: _Segment | None = None
        self._pins: dict[str, float] = {}
        self._scored_s: float | None = None
        self._lock = threading.Lock()

    # -- the reader's side ------------------------------------------------------------------------------------

    def begin(self, stream: VideoStream) -> None:
        """A new connection of ``stream``: what the previous one left is dropped."""
        with self._lock:
            # an open or closing event keeps the connection it was seen on until its clip is cut
            self._previous = self._segment if self._pins else None
            self._segment = _Segment(stream)
            self.nbytes = 0
            self.generation += 1

    def set_origin(self, origin_s: float) -> None:
        """The stream time of timestamp 0 of the current connection."""
        with self._lock:
            self._segment.origin_s = origin_s

    def push(self, packet: Packet) -> None:
        """Keep one demuxed packet (empty packets and those before the connection's first keyframe are skipped)."""
        if packet.size == 0 or (packet.pts is None and packet.dts is None):
            return
        item = BufferedPacket.of(packet)
        with self._lock:
            segment = self._segment
            if not segment.packets and not item.keyframe:
                return  # a clip must start at a keyframe
            if segment.template is None and segment.stream is not None:
                segment.template = CodecTemplate.of(segment.stream, packet)
                segment.stream = None  # the demuxer may close: the template is all a clip needs
            segment.packets.append(item)
            self.nbytes += len(item.data)
            self._trim()

    # -- the evidence side ------------------------------------------------------------------------------------

    def pin(self, key: str, start_s: float) -> None:
        """Keep every packet from the keyframe at or before ``start_s`` until :meth:`unpin` (an open event)."""
        with self._lock:
            self._pins[key] = start_s

    def scored(self, at_s: float) -> None:
        """The scorer's position: an event not opened yet can start at ``at_s`` (stream time) at the earliest, so
        the ring keeps the pre-roll before it, however far the reader is ahead of the scorer."""
        with self._lock:
            self._scored_s = at_s

    def unpin(self, key: str) -> None:
        with self._lock:
            self._pins.pop(key, None)
            if not self._pins:
                self._previous = None

    def latest_s(self) -> float | None:
        """Stream time of the newest packet (``None`` before the connection's origin is known)."""
        with self._lock:
            segment = self._segment
            return segment.time(segment.packets[-1]) if segment.packets else None

    def cut(self, start_s: float, end_s: float) -> ClipPackets | None:
        """The packets from the keyframe at or before ``start_s`` (or the oldest kept) through ``end_s``."""
        with self._lock:
            segment = self._segment
            previous = self._previous
            if previous is not None and previous.packets and (segment.origin_s is None or not segment.packets or (
                    segment.time(segment.packets[0]) or 0.0) > start_s):
                segment = previous  # the event was seen on the connection before
            if segment.template is None or segment.origin_s is None or not segment.packets:
                return None
            packets = list(segment.packets)
            times = [segment.time(p) or 0.0 for p in packets]
        first = 0
        for i, packet in enumerate(packets):
            if packet.keyframe and times[i] <= start_s:
                first = i
        last = max((i for i in range(first, len(packets)) if times[i] <= end_s), default=first)
        chosen = packets[first:last + 1]  # decoding order: everything up to the last packet shown by end_s
        span_end = max(times[i] + float(packets[i].duration * packets[i].time_base) for i in range(first, last + 1))
        return ClipPackets(segment.template, chosen, times[first], span_end, truncated=times[first] > start_s + 1e-6)

    @property
    def seconds(self) -> float:
        """Seconds of video held now."""
        with self._lock:
            packets = self._segment.packets
            if len(packets) < 2:
                return 0.0
            return float((packets[-1].ts - packets[0].ts) * packets[0].time_base)

    def _trim(self) -> None:
        """Drop whole GOPs from the front: those before the horizon (the pre-roll before the newest packet or the
        scorer's position, whichever is earlier, or the oldest pin), and whatever the byte cap does not allow (the
        newest GOP stays)."""
        segment, packets = self._segment, self._segment.packets
        newest = segment.time(packets[-1])
        while True:
            second = next((i for i, p in enumerate(packets) if p.keyframe and i > 0), None)
            if second is None:
                return
            if self.nbytes > self.max_bytes:
                self.dropped_for_bytes += 1
            elif newest is None:
                return
            else:
                now = newest if self._scored_s is None else min(newest, self._scored_s)
                horizon = min([now - self.pre_roll_s, *self._pins.values()])
                second_time = segment.time(packets[second])
                if second_time is None or second_time > horizon:
                    return
            for _ in range(second):
                self.nbytes -= len(packets.popleft().data)
