"""A local RTSP camera for tests: GStreamer's RTSP server with a live H.264 test pattern, on 127.0.0.1.

Unlike ``rtsp-server-perl`` (RTP over UDP only), GStreamer's server can serve RTP over TCP (interleaved in the
RTSP connection), over UDP, or both, as real cameras and NVRs do: :class:`RtspCamera` starts one as a process
(run by the system Python, which has the GObject bindings: Debian's ``python3-gi`` and
``gir1.2-gst-rtsp-server-1.0``, installed by ``scripts/ensure-stream-tools.sh``) and stops it by its pid.

Run directly, it serves until killed and prints ``ready <port>`` once it listens::

    /usr/bin/python3 tests/support/rtsp_camera.py --protocols tcp
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType

PROTOCOLS = ("tcp", "udp", "both")
SYSTEM_PYTHON = "/usr/bin/python3"
PIPELINE = ("( videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=120,framerate=25/1 "
            "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bframes=0 threads=1 "
            "! rtph264pay name=pay0 pt=96 config-interval=1 )")


def gstreamer_missing(python: str = SYSTEM_PYTHON) -> str | None:
    """Why the camera cannot run here (``None`` when it can)."""
    check = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "assert all(Gst.ElementFactory.find(n) for n in ('videotestsrc', 'x264enc', 'rtph264pay'))")
    try:
        done = subprocess.run([python, "-c", check], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{python} cannot run: {exc}"
    if done.returncode != 0:
        return "GStreamer's RTSP server or its plugins are missing: run `bash scripts/ensure-stream-tools.sh`"
    return None


class RtspCamera:
    """GStreamer's RTSP server serving a live test pattern at ``url``, over ``protocols`` (tcp, udp or both).

    Args:
        protocols: The RTP transports it accepts; a client asking for another gets ``461 Unsupported transport``.
        port: The port to listen on (0: a free one, known once started).
        log: File for its output (discarded when ``None``).
        python: The Python with GStreamer's bindings.
    """

    def __init__(self, protocols: str = "both", port: int = 0, log: Path | None = None,
                 python: str = SYSTEM_PYTHON) -> None:
        if protocols not in PROTOCOLS:
            raise ValueError(f"protocols must be one of {PROTOCOLS}, got {protocols!r}")
        self.protocols, self.port, self.log, self.python = protocols, port, log, python
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self, timeout_s: float = 30.0) -> RtspCamera:
        """Start the server and wait until it listens."""
        command = [self.python, __file__, "--protocols", self.protocols, "--port", str(self.port)]
        with self.log.open("w") if self.log is not None else open(os.devnull, "w") as errors:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        line = _read_line(self.process, timeout_s)
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"the RTSP camera did not start (it said {line!r}; see {self.log})")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> RtspCamera:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _read_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(process.stdout.readline() if process.stdout else ""),
                              daemon=True)
    reader.start()
    reader.join(timeout_s)
    return found[0].strip() if found else ""


def serve(protocols: str, port: int = 0) -> None:
    """Serve ``rtsp://127.0.0.1:<port>/cam`` until killed (runs in the system Python, with GStreamer)."""
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))  # 0: any free port (printed once bound)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(False)  # a pipeline per client: a refused SETUP cannot disturb the next one
    lower = {"tcp": GstRtsp.RTSPLowerTrans.TCP, "udp": GstRtsp.RTSPLowerTrans.UDP,
             "both": GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP}[protocols]
    factory.set_protocols(lower)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit("the RTSP server could not listen on 127.0.0.1")
    print(f"ready {server.get_bound_port()}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A local RTSP camera (GStreamer) serving a live test pattern.")
    parser.add_argument("--protocols", choices=PROTOCOLS, default="both")
    parser.add_argument("--port", type=int, default=0, help="0: a free one")
    args = parser.parse_args()
    serve(args.protocols, args.port)
