#!/usr/bin/env bash
# Make sure the live-stream tests' tools are installed: ffmpeg (publishes files as live streams) and
# rtsp-server-perl (a local RTSP relay). Idempotent: installs only what is missing (Debian/Ubuntu, as root).
set -euo pipefail
missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v rtsp-server-perl >/dev/null || missing+=(rtsp-server-perl)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "==> installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
(export DEBIAN_FRONTEND=noninteractive; $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}") >/dev/null
for tool in ffmpeg rtsp-server-perl; do
  command -v "$tool" >/dev/null || { echo "$tool is still missing after apt-get install" >&2; exit 1; }
done
