"""Evidence of a live stream's events: the ring buffer of its compressed packets, the peak frames of open events,
and a thread that writes each closed event's snapshot and clip once its post-roll has passed, and the stream's latest
frame to Redis every ``stream_snapshot_every_s`` (what the Live view shows of the camera now).

The ring reads the packets the source's reader demuxes anyway (a tap: no second connection, no decoding), or,
when the stream names a ``record_url`` (the camera's main stream, its ``url`` being the sub-stream scored), a
second reader that only demuxes that URL (:class:`RecordReader`). The scoring thread only hands over references
(the peak snippet's decoded frame, already in memory); JPEG encoding, remuxing and storage writes happen on this
module's thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from vad.net.redact import redact_text, redact_url
from vad.streamlua import FRAME
from workers.evidence.clip import write_mp4
from workers.evidence.ring import PacketRing
from workers.evidence.snapshot import jpeg
from workers.evidence.store import ClipSpan, EvidenceStore
from workers.settings import WorkerSettings

log = logging.getLogger(__name__)

POLL_S = 0.2
MIN_FRAME_TTL_S = 30


@dataclass
class _Closed:
    event: Any  # workers.stream.event_tracker.LiveEvent
    due_s: float
    generation: int
    image: np.ndarray | None
    peak_s: float | None


class StreamEvidence:
    """One stream's evidence (see the module docstring).

    Args:
        store: Where evidence is written.
        settings: ``evidence_*`` settings and the stream read timeouts.
        record_url: The camera's main stream, read for clips instead of the scored source (``None``: the source).
    """

    def __init__(self, store: EvidenceStore, settings: WorkerSettings, record_url: str | None = None) -> None:
        self.store, self.settings, self.record_url = store, settings, record_url
        self.pre_roll_s, self.post_roll_s = settings.evidence_pre_roll_s, settings.evidence_post_roll_s
        self.max_clip_s = settings.evidence_max_clip_s
        # an event opens once it has lasted stream_min_event_s: the ring keeps that much more than the pre-roll
        self.ring = PacketRing(self.pre_roll_s + settings.stream_min_event_s,
                               int(settings.evidence_buffer_mb * 1024 * 1024))
        self.saved = 0
        self._peak: tuple[str, np.ndarray, float] | None = None  # the run being followed: one at a time
        self._frame: tuple[np.ndarray, float] | None = None  # the latest kept frame, replaced at every snippet
        self._frame_due = 0.0  # monotonic time from which the next frame may be written
        self._write_frame = store.conn.register_script(FRAME)
        self._closed: list[_Closed] = []
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._reader: RecordReader | None = None
        self._thread = threading.Thread(target=self._run, name="vad-evidence", daemon=True)

    # -- the runner's side (its thread: only references change hands) ------------------------------------------

    def attach(self, source: Any) -> None:
        """Start buffering packets of ``source`` (a :class:`~workers.stream.live_source.LiveSource`), or of the
        ``record_url`` beside it."""
        if self.record_url:
            self._reader = RecordReader(self.record_url, self.ring, source, self.settings).start()
        else:
            source.packet_tap = self.ring
        self._thread.start()

    def peak(self, event_id: str, image: np.ndarray, start_s: float, end_s: float) -> None:
        """The kept frame of the event's (or its run's) highest-scoring snippet so far."""
        self._peak = (event_id, image, (start_s + end_s) / 2)

    def frame(self, image: np.ndarray, at_s: float) -> None:
        """The latest kept frame (``at_s`` on the stream clock); the evidence thread writes one every
        ``stream_snapshot_every_s``."""
        self._frame = (image, at_s)

    def scored(self, at_s: float) -> None:
        """The scorer's position on the stream clock: an event not opened yet starts at ``at_s`` at the earliest."""
        self.ring.scored(at_s)

    def opened(self, event: Any) -> None:
        self.ring.pin(event.id, event.start_s - self.pre_roll_s)

    def closed(self, event: Any) -> None:
        """The event closed: its evidence is written once the post-roll has been buffered."""
        peak, self._peak = self._peak, None
        image, peak_s = (peak[1], peak[2]) if peak is not None and peak[0] == event.id else (None, None)
        with self._cond:
            self._closed.append(_Closed(event, event.end_s + self.post_roll_s, self.ring.generation, image, peak_s))
            self._cond.notify_all()

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is pending now (the post-roll is what has come), stop the record reader, wait; remove the
        latest frame (a stream that stopped shows its latest event's snapshot, not a picture of the camera now)."""
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._reader is not None:
            self._reader.stop()
        if self.settings.stream_snapshot_every_s:
            try:
                self.store.conn.delete(self.store.keys.stream_frame(self.store.source.source_id))
            except Exception as exc:  # Redis away: the frame expires with its TTL
                log.warning("stream %s: its latest frame was not removed: %s", self.store.source.source_id, exc)

    # -- the evidence thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._closed and self._closing.is_set():
                    return
                self._cond.wait(POLL_S)
                latest, generation = self.ring.latest_s(), self.ring.generation
                ready = [c for c in self._closed if self._closing.is_set() or c.generation != generation
                         or (latest is not None and latest >= c.due_s)]
                self._closed = [c for c in self._closed if c not in ready]
            for item in ready:
                try:
                    self._save(item)
                except Exception as exc:  # storage away, a broken packet: this event lacks evidence, the stream goes on
                    log.warning("stream %s: no evidence for event %s: %s", self.store.source.source_id,
                                item.event.id, exc)
                finally:
                    self.ring.unpin(item.event.id)
            self._latest_frame()

    def _latest_frame(self) -> None:
        """Write the latest frame to Redis if one has come and ``stream_snapshot_every_s`` has passed since the
        last; a failed write is retried only then, so a Redis outage costs one warning per period."""
        every, frame = self.settings.stream_snapshot_every_s, self._frame
        now = time.monotonic()
        if not every or frame is None or now < self._frame_due:
            return
        self._frame, self._frame_due = None, now + every
        source = self.store.source
        keys = self.store.keys.stream_script_keys(source.source_id, source.owner)
        ttl = max(math.ceil(3 * every), MIN_FRAME_TTL_S)  # a stopped stream's frame goes soon after
        try:
            self._write_frame(keys=keys, args=[jpeg(frame[0]), repr(time.time()), repr(round(frame[1], 6)), ttl])
        except Exception as exc:  # Redis away, a frame Pillow refuses: no live frame this time, the stream goes on
            log.warning("stream %s: its latest frame was not written: %s", source.source_id, exc)

    def _save(self, item: _Closed) -> None:
        event = item.event
        start = max(event.start_s - self.pre_roll_s, event.end_s + self.post_roll_s - self.max_clip_s)
        end = event.end_s + self.post_roll_s

        def clip(path: Path) -> ClipSpan | None:
            packets = self.ring.cut(start, end)
            if packets is None:
                return None
            with packets.template.stream() as template:
                write_mp4(template, packets.packets, path)
            return ClipSpan(packets.start_s, packets.end_s, packets.truncated)

        if self.store.save(event.id, event.start_s, event.end_s, item.image, item.peak_s, clip) is not None:
            self.saved += 1


class RecordReader:
    """Demuxes ``record_url`` into the ring (no decoding), reconnecting with backoff; its packets are placed on the
    scored source's clock at the moment the first one arrives."""

    def __init__(self, url: str, ring: PacketRing, source: Any, settings: WorkerSettings) -> None:
        self.url, self.ring, self.source, self.settings = url, ring, source, settings
        self.display_url = redact_url(url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"vad-record {self.display_url}", daemon=True)

    def start(self) -> RecordReader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.settings.stream_read_timeout_s + 1.0)

    def _run(self) -> None:
        delay = self.settings.stream_backoff_initial_s
        while not self._stop.is_set():
            try:
                if self._read_once():
                    delay = self.settings.stream_backoff_initial_s
            except (av.error.FFmpegError, OSError) as exc:
                log.warning("record stream %s: %s; retrying in %.1f s", self.display_url,
                            redact_text(str(exc), self.url), delay)
            if self._stop.wait(delay):
                return
            delay = min(delay * 2.0, self.settings.stream_backoff_max_s)

    def _read_once(self) -> bool:
        timeout = self.settings.stream_read_timeout_s
        with av.open(self.url, "r", timeout=(timeout, timeout), metadata_errors="replace") as container:
            if not container.streams.video:
                raise OSError("it has no video stream")
            stream = container.streams.video[0]
            self.ring.begin(stream)
            placed = False
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return placed
                if not placed:
                    now = self.source.stream_time_now()
                    if now is None or packet.pts is None or packet.time_base is None:
                        continue  # the scored stream has no clock yet: nothing to place this one on
                    self.ring.set_origin(now - float(packet.pts * packet.time_base))
                    placed = True
                self.ring.push(packet)
        return placed

