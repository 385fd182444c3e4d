"""GPU per worker process: found without torch, dealt round-robin, one per GPU by default."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest

from workers.runtime.gpus import default_concurrency, detect_gpus, gpu_for_slot, uses_gpu_assignment


def smi(output: str):  # type: ignore[no-untyped-def]
    calls: list[list[str]] = []

    def run(cmd: Sequence[str]) -> str:
        calls.append(list(cmd))
        return output

    return run, calls


def test_explicit_lists_and_none() -> None:
    assert detect_gpus("0, 2", {}) == ["0", "2"]
    assert detect_gpus("GPU-1a,GPU-2b", {"CUDA_VISIBLE_DEVICES": "7"}) == ["GPU-1a", "GPU-2b"]
    assert detect_gpus("none", {"CUDA_VISIBLE_DEVICES": "0,1"}) == []


def test_auto_takes_cuda_visible_devices_then_nvidia_smi() -> None:
    run, calls = smi("0\n1\n2\n3\n")
    assert detect_gpus("auto", {"CUDA_VISIBLE_DEVICES": "2,3"}, run) == ["2", "3"] and not calls
    assert detect_gpus("auto", {"CUDA_VISIBLE_DEVICES": ""}, run) == [] and not calls
    assert detect_gpus("auto", {"CUDA_VISIBLE_DEVICES": "-1"}, run) == []
    assert detect_gpus("auto", {}, run) == ["0", "1", "2", "3"]
    assert calls == [["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"]]


def test_a_failing_nvidia_smi_means_no_gpu() -> None:
    def broken(cmd: Sequence[str]) -> str:
        raise subprocess.CalledProcessError(9, list(cmd))

    assert detect_gpus("auto", {}, broken) == []
    assert detect_gpus("auto", {}, smi("No devices were found\n")[0]) == []


@pytest.mark.parametrize(("gpus", "per_gpu", "expected"), [([], 1, 1), (["0"], 1, 1), (["0", "1"], 1, 2),
                                                            (["0", "1"], 3, 6)])
def test_one_process_per_gpu_by_default(gpus: list[str], per_gpu: int, expected: int) -> None:
    assert default_concurrency(gpus, per_gpu) == expected


def test_slots_are_dealt_round_robin() -> None:
    assert [gpu_for_slot(slot, ["0", "1"]) for slot in range(4)] == ["0", "1", "0", "1"]
    assert gpu_for_slot(3, []) is None
    assert uses_gpu_assignment("auto") and uses_gpu_assignment("cuda")
    assert not uses_gpu_assignment("cuda:1") and not uses_gpu_assignment("cpu")
