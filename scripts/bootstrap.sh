#!/usr/bin/env bash
# Create or update the development virtualenv at .venv (idempotent; reinstalls only when
# pyproject.toml or the pinned requirements change).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.dsanet-vad-installed
want=$(cat pyproject.toml requirements/cpu-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing dsanet-vad[dev] with pinned torch/torchvision (first time: a few minutes, ~6 GB)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements/cpu-dev.txt -e ".[dev]"
  echo "$want" > "$stamp"
fi
