#!/usr/bin/env bash
# Make sure FFmpeg's shared libraries (libavcodec, libavformat, ...) are installed for the torchcodec decoding
# backend (workers/video/torchcodec_source.py; PyAV and decord bundle their own FFmpeg). torchcodec loads the
# system's FFmpeg 4 to 8. Installs Debian's ffmpeg package (the libraries and the command line) with apt-get
# when they are missing and running as root; otherwise prints how to install them. Without them torchcodec
# cannot be imported: backend='auto' goes on with PyAV, and the torchcodec tests fail (installed but unusable).
set -euo pipefail
have_libs() { PATH="$PATH:/sbin:/usr/sbin" ldconfig -p 2>/dev/null | grep -q 'libavcodec\.so\.[0-9]'; }
if have_libs; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing ffmpeg (FFmpeg's shared libraries, for the torchcodec decoder)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg) >/dev/null
  exit 0
fi
echo "note: FFmpeg's shared libraries were not found and this is not root (or has no apt-get): torchcodec cannot" \
     "load them; install them with: sudo apt-get install ffmpeg (or conda install ffmpeg)" >&2
