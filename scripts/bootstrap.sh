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
  # pip byte-compiles each installed file, one at a time (about 40 of 100 s on 2 cores, most of it torch);
  # compileall does the same on every core. Python would compile a module on its first import otherwise, in every
  # process where PYTHONDONTWRITEBYTECODE is set. compileall exits 1 for a file it cannot compile (torch ships one
  # test helper in Python 3.12 syntax), which pip's compile step skips too.
  .venv/bin/python -m pip install --quiet --no-compile -r requirements/cpu-dev.txt -e ".[dev]"
  .venv/bin/python -m compileall -q -j 0 .venv/lib/ > /dev/null || true
  echo "$want" > "$stamp"
fi
