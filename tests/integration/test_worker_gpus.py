"""`vad worker` gives each worker process its own GPU through CUDA_VISIBLE_DEVICES (real supervisor, real children).

No GPU is needed: the children only receive the variable (on a CPU machine `auto` then runs on the CPU).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from model.bundle import save_bundle
from tests.conftest import tiny_bundle

REDIS_URL = "redis://127.0.0.1:6379/0"


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def visible_devices(pid: int) -> str | None:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = [item.split(b"=", 1)[1].decode() for item in environ if item.startswith(b"CUDA_VISIBLE_DEVICES=")]
    return found[0] if found else None


@pytest.mark.slow
@pytest.mark.parametrize(("env", "expected"), [({"VAD_GPUS": "0,1", "VAD_WORKERS_PER_GPU": "2"}, ["0", "0", "1", "1"]),
                                               ({"VAD_GPUS": "0,1", "VAD_DEVICE": "cpu"}, [None])])
def test_each_worker_process_gets_its_gpu(tmp_path: Path, env: dict[str, str], expected: list[str | None]) -> None:
    conn = redis.Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except redis.ConnectionError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    save_bundle(tiny_bundle(), tmp_path / "tiny.safetensors")
    tag = secrets.token_hex(4)
    base = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    full_env = {**base, "HF_HUB_OFFLINE": "1", "VAD_REDIS_URL": REDIS_URL, "VAD_QUEUE_NAME": f"gpus-{tag}",
                "VAD_KEY_PREFIX": f"gpus-{tag}:", "VAD_BUNDLE": str(tmp_path / "tiny.safetensors"),
                "VAD_DEVICE": "auto", "VAD_STORAGE_DIR": str(tmp_path / "uploads"), **env}
    supervisor = subprocess.Popen([sys.executable, "-m", "vad", "worker"], env=full_env,
                                  stdout=(tmp_path / "worker.log").open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while len(children_of(supervisor.pid)) < len(expected) and time.monotonic() < deadline:
            assert supervisor.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
        pids = children_of(supervisor.pid)
        assert sorted((visible_devices(pid) for pid in pids), key=str) == expected
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(timeout=60)
        except subprocess.TimeoutExpired:
            supervisor.kill()
        keys = list(conn.scan_iter(f"*gpus-{tag}*"))
        if keys:
            conn.delete(*keys)
