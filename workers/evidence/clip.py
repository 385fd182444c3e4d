"""Clips without re-encoding: compressed packets remuxed into an MP4 (``+faststart``), timestamps rebased to 0.

The packets come from a live stream's ring buffer (:mod:`workers.evidence.ring`) or from a stored video
(:func:`cut_file`); either way they start at a keyframe, keep their bytes, and only their container changes. A
live connection's codec parameters outlive its demuxer as a :class:`CodecTemplate`: a tiny NUT file holding the
stream's header and first keyframe, reopened to give PyAV a template stream when a clip is written.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.packet import Packet
from av.video.stream import VideoStream

MP4_OPTIONS = {"movflags": "+faststart"}
"""The index first: a browser plays (and seeks in) a clip before it has all of it."""


@dataclass(frozen=True)
class BufferedPacket:
    """One compressed packet kept in memory: its bytes and timestamps (in ``time_base`` units)."""

    data: bytes
    pts: int | None
    dts: int | None
    duration: int
    keyframe: bool
    time_base: Fraction

    @classmethod
    def of(cls, packet: Packet) -> BufferedPacket:
        tb = packet.time_base or Fraction(1, 90000)
        return cls(bytes(packet), packet.pts, packet.dts, int(packet.duration or 0), bool(packet.is_keyframe), tb)

    @property
    def ts(self) -> int:
        """The presentation timestamp, or the decoding one when the demuxer gave none."""
        return self.pts if self.pts is not None else (self.dts or 0)


class CodecTemplate:
    """A video stream's codec parameters, kept after its demuxer is closed (see the module docstring)."""

    def __init__(self, header: bytes) -> None:
        self.header = header

    @classmethod
    def of(cls, stream: VideoStream, keyframe: Packet) -> CodecTemplate:
        """From a live stream and its first keyframe (a NUT header alone cannot be reopened)."""
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="nut") as nut:
            out = nut.add_stream_from_template(stream)
            copy = av.Packet(bytes(keyframe))
            copy.pts, copy.dts, copy.time_base, copy.is_keyframe = 0, 0, keyframe.time_base, True
            copy.stream = out
            nut.mux(copy)
        return cls(buffer.getvalue())

    @contextmanager
    def stream(self) -> Iterator[VideoStream]:
        """A template stream with these parameters, while the context lasts."""
        with av.open(io.BytesIO(self.header), "r", format="nut") as container:
            yield container.streams.video[0]


def write_mp4(template: VideoStream, packets: Iterable[BufferedPacket], path: Path) -> int:
    """Remux ``packets`` (starting at a keyframe) into an MP4 at ``path``; the number of packets written.

    Timestamps are rebased so that the first packet decodes at 0, and decoding timestamps are made strictly
    increasing (a muxer refuses anything else).
    """
    written = 0
    with av.open(str(path), "w", format="mp4", options=MP4_OPTIONS) as mp4:
        out = mp4.add_stream_from_template(template)
        base: int | None = None
        last_dts: int | None = None
        for item in packets:
            dts = item.dts if item.dts is not None else item.ts
            if base is None:
                base = min(dts, item.ts)
            dts -= base
            if last_dts is not None and dts <= last_dts:
                dts = last_dts + 1
            packet = av.Packet(item.data)
            packet.dts, packet.pts = dts, max(item.ts - base, dts)
            packet.duration, packet.time_base, packet.is_keyframe = item.duration, item.time_base, item.keyframe
            packet.stream = out
            mp4.mux(packet)
            last_dts, written = dts, written + 1
    return written


@dataclass(frozen=True)
class FileCut:
    """What :func:`cut_file` wrote: its time span in the source's seconds (from its first frame) and packets."""

    start_s: float
    end_s: float
    packets: int


def cut_file(source: Path, start_s: float, end_s: float, path: Path) -> FileCut:
    """Remux ``start_s .. end_s`` of a stored video (seconds from its first frame) into an MP4 at ``path``, from the
    keyframe at or before ``start_s``, without re-encoding.

    Raises:
        ValueError: The file has no video stream, or no packet in that span.
    """
    with av.open(str(source), "r") as container:
        if not container.streams.video:
            raise ValueError(f"{source.name} has no video stream")
        stream = container.streams.video[0]
        tb = stream.time_base or Fraction(1, 90000)
        origin = stream.start_time or 0
        first = origin + int(max(0.0, start_s) / tb)
        container.seek(first, stream=stream, backward=True, any_frame=False)
        kept = list(_span(container, stream, first, origin + int(end_s / tb)))
        if not kept:
            raise ValueError(f"{source.name} has no video between {start_s:.2f} s and {end_s:.2f} s")
        written = write_mp4(stream, kept, path)
        begin = min(p.ts for p in kept)
        last = max(p.ts + p.duration for p in kept)
        return FileCut(float((begin - origin) * tb), float((last - origin) * tb), written)


def _span(container: av.container.InputContainer, stream: VideoStream, first: int, last: int
          ) -> Iterator[BufferedPacket]:
    """Packets from the keyframe the seek landed on (at or before ``first``) through ``last``."""
    started = False
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        item = BufferedPacket.of(packet)
        if not started:
            if not item.keyframe:
                continue  # a seek may land before the keyframe it asked for on some demuxers
            started = True
        if (item.dts if item.dts is not None else item.ts) > last:  # decoding order: B-frames' pts go back
            return
        yield item
