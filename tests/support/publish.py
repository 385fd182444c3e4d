"""Real live sources for tests and benchmarks: a local RTSP relay and FFmpeg publishing files at real-time pace.

* :class:`RtspRelay` runs ``rtsp-server-perl`` (Debian's ``rtsp-server-perl``): publishers ANNOUNCE on its source
  port, readers PLAY from its client port (RTP over UDP; it refuses RTP over TCP).
* :class:`Publisher` runs ``ffmpeg -re`` to send a file as a live stream: RTSP to a relay, or MPEG-TS over UDP.
  ``copy=True`` sends the file's own packets (no re-encoding: the frames a reader decodes are the file's);
  otherwise it encodes H.264 for low latency (``zerolatency``, a keyframe every ``gop`` frames, as cameras do).

``scripts/ensure-stream-tools.sh`` installs both tools. Every process is started with its own arguments and ended
by its pid.
"""

from __future__ import annotations

import bisect
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from vad.cli.stack import free_port

RELAY = "rtsp-server-perl"
FFMPEG = "ffmpeg"


def missing_tools(*names: str) -> list[str]:
    """The named executables not on ``PATH``."""
    return [name for name in names if shutil.which(name) is None]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop(process: subprocess.Popen | None, sig: int = signal.SIGTERM, wait_s: float = 5.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(wait_s)


class RtspRelay:
    """``rtsp-server-perl`` on free local ports.

    Args:
        client_port: Port readers connect to (free one when ``None``).
        source_port: Port publishers connect to (free one when ``None``).
        log: File for its output (discarded when ``None``).
    """

    def __init__(self, client_port: int | None = None, source_port: int | None = None, log: Path | None = None) -> None:
        self.client_port = client_port or free_port()
        self.source_port = source_port or free_port()
        self.rtp_port = free_port(socket.SOCK_DGRAM)
        self.log = log
        self.process: subprocess.Popen | None = None

    def url(self, path: str = "cam") -> str:
        """The URL readers open."""
        return f"rtsp://127.0.0.1:{self.client_port}/{path}"

    def publish_url(self, path: str = "cam") -> str:
        """The URL publishers send to."""
        return f"rtsp://127.0.0.1:{self.source_port}/{path}"

    def start(self, timeout_s: float = 30.0) -> RtspRelay:
        """Start it and wait until both ports accept connections."""
        out = self.log.open("ab") if self.log is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [RELAY, "-c", str(self.client_port), "-s", str(self.source_port), "--client_listen_address", "127.0.0.1",
             "--source_listen_address", "127.0.0.1", "--rtp_start_port", str(self.rtp_port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while not (_listening(self.client_port) and _listening(self.source_port)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{RELAY} did not start listening on {self.client_port}/{self.source_port} within "
                                   f"{timeout_s:g} s")
            time.sleep(0.05)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """End it (``SIGKILL`` to simulate a crashed camera server)."""
        _stop(self.process, sig)

    def __enter__(self) -> RtspRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Publisher:
    """``ffmpeg -re`` sending a file as a live stream.

    Args:
        video: The file.
        target: ``rtsp://…`` (a relay's publish URL) or ``udp://127.0.0.1:PORT`` (MPEG-TS).
        copy: Send the file's packets as they are (else encode H.264 with low latency).
        gop: Keyframe interval when encoding.
        size: ``(width, height)`` to scale to when encoding.
        loop: Play the file this many extra times (``-1``: forever).
        log: File for FFmpeg's output.

    Attributes:
        started_mono: ``time.monotonic()`` just before FFmpeg was started: the file's time ``t`` is published no
            earlier than ``started_mono + t`` (``-re`` reads the input at its own pace from its start).
        progress: ``(monotonic time, media seconds written)`` pairs from FFmpeg's ``-progress`` reports (every
            0.1 s), for :meth:`published_at`.
    """

    def __init__(self, video: Path, target: str, *, copy: bool = False, gop: int = 25,
                 size: tuple[int, int] | None = None, loop: int = 0, log: Path | None = None) -> None:
        self.video, self.target, self.copy, self.gop, self.size, self.loop = video, target, copy, gop, size, loop
        self.log = log
        self.process: subprocess.Popen | None = None
        self.started_mono = 0.0
        self.progress: list[tuple[float, float]] = []
        self._reader: threading.Thread | None = None

    def command(self) -> list[str]:
        args = [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-progress", "pipe:1", "-stats_period", "0.1",
                "-re"]
        if self.loop:
            args += ["-stream_loop", str(self.loop)]
        args += ["-i", str(self.video), "-an"]
        if self.copy:
            args += ["-c:v", "copy"]
        else:
            args += ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(self.gop),
                     "-pix_fmt", "yuv420p"]
            if self.size is not None:
                args += ["-vf", f"scale={self.size[0]}:{self.size[1]}"]
        if self.target.startswith("rtsp://"):
            return [*args, "-f", "rtsp", self.target]
        return [*args, "-f", "mpegts", f"{self.target}?pkt_size=1316"]

    def start(self) -> Publisher:
        err = self.log.open("ab") if self.log is not None else subprocess.DEVNULL
        self.progress = []
        self.started_mono = time.monotonic()
        self.process = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        self._reader = threading.Thread(target=self._read_progress, args=(self.process,), daemon=True,
                                        name="publisher-progress")
        self._reader.start()
        return self

    def _read_progress(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            key, _, value = raw.decode(errors="replace").strip().partition("=")
            if key == "out_time_us" and value.lstrip("-").isdigit():
                self.progress.append((time.monotonic(), int(value) / 1e6))

    def published_at(self, t: float) -> float | None:
        """Monotonic time at which media time ``t`` of the file was written, interpolated between FFmpeg's
        progress reports; ``None`` before it got there. Never earlier than ``started_mono + t`` (``-re``)."""
        reports = list(self.progress)
        media = [m for _, m in reports]
        k = bisect.bisect_left(media, t)
        if k >= len(reports):
            return None
        wall, m = reports[k]
        if k > 0 and m > t:
            (wall0, m0) = reports[k - 1]
            wall = wall0 + (wall - wall0) * (t - m0) / (m - m0) if m > m0 else wall
        return max(wall, self.started_mono + t)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout_s: float) -> int | None:
        """Wait for FFmpeg to finish the file; its exit code (``None`` if still running)."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop publishing (``SIGTERM``: FFmpeg ends the RTSP session properly)."""
        _stop(self.process, sig)

    def __enter__(self) -> Publisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def reencode_for_streaming(src: Path, dst: Path, *, gop: int = 25, size: tuple[int, int] | None = None) -> Path:
    """Re-encode ``src`` as a camera would send it (H.264, no B-frames, a keyframe every ``gop`` frames), so that
    a publisher can send it with ``copy=True`` at no CPU cost."""
    args = [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-an", "-c:v", "libx264",
            "-preset", "veryfast", "-tune", "zerolatency", "-bf", "0", "-g", str(gop), "-pix_fmt", "yuv420p"]
    if size is not None:
        args += ["-vf", f"scale={size[0]}:{size[1]}"]
    subprocess.run([*args, str(dst)], check=True, capture_output=True, timeout=600)
    return dst
