"""Which GPU each worker process uses, decided by the CUDA-free supervisor.

The supervisor never imports torch (a parent that initialised CUDA could not hand GPUs to children cleanly), so it
finds the GPUs from ``VAD_GPUS``, ``CUDA_VISIBLE_DEVICES`` or ``nvidia-smi``, and gives each spawned worker process
exactly one through ``CUDA_VISIBLE_DEVICES``: inside the process that GPU is ``cuda`` (``cuda:0``), so every tensor
of a job stays on it. Slots are dealt round-robin, so ``workers_per_gpu = 2`` on two GPUs gives 0, 1, 0, 1.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence

Runner = Callable[[Sequence[str]], str]


def _nvidia_smi(cmd: Sequence[str]) -> str:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=10, check=True).stdout


def detect_gpus(spec: str, env: Mapping[str, str], run: Runner | None = None) -> list[str]:
    """The GPUs worker processes may use, as ``CUDA_VISIBLE_DEVICES`` entries (indices or UUIDs).

    Args:
        spec: The ``gpus`` setting: ``auto``, ``none`` or a comma list such as ``0,1`` or ``GPU-3f…``.
        env: The supervisor's environment (``CUDA_VISIBLE_DEVICES`` narrows ``auto``).
        run: Runs ``nvidia-smi`` and returns its output (tests pass a fake); ``None``: the real one when installed.

    Returns:
        The GPUs in order; empty when there are none (the workers then run where ``device`` says, usually CPU).
    """
    spec = spec.strip()
    if spec.lower() == "none":
        return []
    if spec.lower() != "auto":
        return [item.strip() for item in spec.split(",") if item.strip()]
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:  # set, even empty: the operator already chose (empty or -1 means no GPU)
        return [item.strip() for item in visible.split(",") if item.strip() and item.strip() != "-1"]
    if run is None:
        if shutil.which("nvidia-smi") is None:
            return []
        run = _nvidia_smi
    try:
        out = run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"])
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().isdigit()]


def uses_gpu_assignment(device: str) -> bool:
    """Whether processes get one GPU each: for ``auto`` and ``cuda``; ``cuda:N`` pins every process to GPU ``N``."""
    return device in ("auto", "cuda")


def default_concurrency(gpus: Sequence[str], workers_per_gpu: int) -> int:
    """One process per GPU (times ``workers_per_gpu``); one process without GPUs."""
    return max(1, len(gpus) * workers_per_gpu)


def gpu_for_slot(slot: int, gpus: Sequence[str]) -> str | None:
    """The GPU of worker slot ``slot`` (round-robin), ``None`` without GPUs."""
    return gpus[slot % len(gpus)] if gpus else None
