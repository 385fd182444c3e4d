#!/usr/bin/env bash
# Make sure the live-stream tests' tools are installed: ffmpeg (publishes files as live streams), rtsp-server-perl
# (a local RTSP relay, UDP transport only) and GStreamer's RTSP server with its Python bindings (a local camera
# that serves RTSP over TCP, UDP or both: tests/support/rtsp_camera.py). Idempotent: installs only what is
# missing (Debian/Ubuntu, as root).
set -euo pipefail
GST_PACKAGES=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
              gstreamer1.0-plugins-ugly)
have_gst() {
  /usr/bin/python3 - <<'PY' 2>/dev/null
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer  # noqa: F401
Gst.init(None)
assert all(Gst.ElementFactory.find(name) for name in ("videotestsrc", "x264enc", "rtph264pay"))
PY
}
missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v rtsp-server-perl >/dev/null || missing+=(rtsp-server-perl)
have_gst || missing+=("${GST_PACKAGES[@]}")
[ ${#missing[@]} -eq 0 ] && exit 0
echo "==> installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
(export DEBIAN_FRONTEND=noninteractive; $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}") >/dev/null
for tool in ffmpeg rtsp-server-perl; do
  command -v "$tool" >/dev/null || { echo "$tool is still missing after apt-get install" >&2; exit 1; }
done
have_gst || { echo "GStreamer's RTSP server (python3-gi, GstRtspServer, x264enc) is still missing" >&2; exit 1; }
