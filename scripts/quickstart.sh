#!/usr/bin/env bash
# The main job, end to end on this machine: sets up .venv, then imports a checkpoint in the
# authors' format and scores a feature sequence with it (see scripts/quickstart.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/python scripts/quickstart.py "$@"
