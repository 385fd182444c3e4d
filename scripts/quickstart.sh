#!/usr/bin/env bash
# The README's first command: sets up .venv, then runs `vad demo`: it builds (once, cached) a DSANet model
# trained on synthetic videos, starts the local service, analyses held-out synthetic videos over HTTP, prints
# their events next to the truth, writes PNG plots and serves the web page until Ctrl-C.
# Arguments go to `vad demo` (e.g. --no-serve, --port 8080, --bundle ucf.safetensors; see `vad demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
command -v redis-server >/dev/null || bash scripts/ensure-redis.sh  # vad demo runs its own redis-server
export HF_HUB_OFFLINE=1
exec .venv/bin/vad demo "$@"
