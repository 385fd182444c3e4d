#!/usr/bin/env bash
# The test command: sets up .venv, makes sure Redis answers and Chromium, FFmpeg, an RTSP relay and Mosquitto are
# installed, runs the whole suite (slow tests included) in two phases (below). Extra arguments go to both pytest runs,
# e.g. `bash scripts/test.sh -m "not slow" -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/ensure-redis.sh
bash scripts/ensure-chromium.sh  # for the browser test of the web page
bash scripts/ensure-ffmpeg.sh    # FFmpeg's shared libraries, for the torchcodec decoder
bash scripts/ensure-stream-tools.sh  # ffmpeg, rtsp-server-perl and GStreamer's RTSP server, for the live-stream tests
bash scripts/ensure-mqtt.sh          # the Mosquitto broker, for the MQTT tests
export HF_HUB_OFFLINE=1  # open_clip must never wait on the network
# Bytecode caches on, whatever the environment says: the suite starts many Python processes (xdist workers, APIs,
# workers, CLI runs); with PYTHONDONTWRITEBYTECODE set each compiles the project's modules anew and each xdist
# worker rewrites every test module's asserts anew (collection: 15 s of CPU per worker instead of 10 s).
unset PYTHONDONTWRITEBYTECODE
setup_s=$SECONDS
# Two phases. First everything but the timing tests, on every core (pytest-xdist; a test module is one unit of
# work, so that its module fixtures, such as a running stack, start once; handed out in collection order: tests/e2e,
# whose modules take longest, first, so that no long module starts last). It runs one process more than there are
# cores: a good part of the suite waits on real time (videos played at their pace, servers starting and stopping),
# and the spare process keeps the cores busy meanwhile (2 cores: 6 min 14 s with 2, 5 min 21 s with 3); each gets
# one torch thread per core it has (tests/conftest.py). VAD_TEST_WORKERS sets the number (0: in this process).
# Then the tests marked `timing` (latency, lag, drops, stop times), without the rest of the suite's load, which would
# skew what they measure. Each is light (a video played in real time, a small model), so two modules run side by
# side where there are two cores: they measured what they measure alone (docs/development.md) in half the time.
# --durations shows where the time goes in CI logs.
workers=${VAD_TEST_WORKERS:-$(( $(nproc) + 1 ))}
if [ "$(nproc)" -ge 2 ]; then timing_workers=(-n 2 --dist loadfile); else timing_workers=(-p no:xdist); fi
# One folder for this run: each phase's temporary files (pytest's default folders are shared by every pytest
# session of the user and it removes all but the newest three, so another session running beside this one would
# take files from under its tests) and the demo model, built once by whichever test first needs it, for both phases
# (tests/conftest.py: demo_bundle).
run_dir=$(mktemp -d -t vad-test-XXXXXX)
trap 'rm -rf "$run_dir"' EXIT
export VAD_TEST_DEMO_CACHE="$run_dir/demo-cache"
set +e
.venv/bin/python -m pytest -n "$workers" --dist loadfile --no-loadscope-reorder --timing=skip --basetemp="$run_dir/parallel" --durations=25 "$@"
parallel=$?
parallel_s=$((SECONDS - setup_s))
if [ "$#" -eq 0 ]; then  # the whole suite: collect only the modules that hold timing tests (collecting all takes ~20 s)
  set -- $(grep -rl --include='test_*.py' 'pytest.mark.timing' tests | sort)
fi
.venv/bin/python -m pytest "${timing_workers[@]}" --timing=only --basetemp="$run_dir/timing" --durations=10 "$@"
timing=$?
set -e
echo "scripts/test.sh: setup ${setup_s} s, parallel phase ${parallel_s} s, timing phase $((SECONDS - setup_s - parallel_s)) s"
# pytest exits 5 when a phase selected no test (say, arguments that pick no timing test): that is no failure unless
# both phases selected none.
if [ "$parallel" -eq 5 ] && [ "$timing" -eq 5 ]; then exit 5; fi
for code in "$parallel" "$timing"; do
  if [ "$code" -ne 0 ] && [ "$code" -ne 5 ]; then exit "$code"; fi
done
exit 0
