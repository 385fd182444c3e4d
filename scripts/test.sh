#!/usr/bin/env bash
# The test command: sets up .venv, makes sure Redis answers and Chromium, FFmpeg, an RTSP relay and Mosquitto are
# installed, runs the whole suite (slow tests included). Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow" -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/ensure-redis.sh
bash scripts/ensure-chromium.sh  # for the browser test of the web page
bash scripts/ensure-ffmpeg.sh    # FFmpeg's shared libraries, for the torchcodec decoder
bash scripts/ensure-stream-tools.sh  # ffmpeg, rtsp-server-perl and GStreamer's RTSP server, for the live-stream tests
bash scripts/ensure-mqtt.sh          # the Mosquitto broker, for the MQTT tests
export HF_HUB_OFFLINE=1  # open_clip must never wait on the network
exec .venv/bin/python -m pytest --durations=25 "$@"  # the slowest 25, so that CI logs show where the time goes
