"""`vad serve`: embedded Redis + API + workers, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import answers
from vad.cli.stack import free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def processes_mentioning(marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if marker in cmdline or marker.encode() in environ:
            found.append(f"{proc.name}: {cmdline}")
    return found


def test_serve_runs_a_job_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    from model.bundle import save_bundle
    from tests.conftest import tiny_bundle
    from workers.synthetic import make_video

    save_bundle(tiny_bundle("xd", seed=3), tmp_path / "tiny.safetensors")
    make_video(tmp_path / "v.mp4", duration_s=4, fps=25, size=(96, 64), seed=4)
    marker = f"vad-serve-test-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k not in ("VAD_REDIS_URL", "REDIS_URL")}
    env.update(HF_HUB_OFFLINE="1", VAD_BUNDLE=str(tmp_path / "tiny.safetensors"), VAD_DEVICE="cpu",
               VAD_STORAGE_DIR=str(tmp_path / "uploads"), VAD_TEST_MARKER=marker)
    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "vad", "serve", "--port", str(port)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(url), 150, "vad serve", serve)
        with open(tmp_path / "v.mp4", "rb") as f:
            job = httpx.post(f"{url}/v1/videos", files={"file": ("v.mp4", f)}, timeout=30).json()
        deadline = time.monotonic() + 120
        while (status := httpx.get(f"{url}/v1/jobs/{job['id']}").json()["status"]) not in ("finished", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert status == "finished"
        # serve, API, supervisor, worker process (redis-server rewrites its title, hiding its environment)
        assert len(processes_mentioning(marker)) >= 4
    finally:
        serve.send_signal(signal.SIGINT)
        output = serve.communicate(timeout=90)[0]
    assert serve.returncode == 0, output
    # announced once /readyz answered 200, after the models were loaded, not when the API first listened
    assert output.index("waiting for the workers to load their models") < output.index("dsanet-vad is up")
    time.sleep(0.5)
    assert processes_mentioning(marker) == []
    assert not answers(url)
    redis_port = int(re.search(r"Redis redis://127\.0\.0\.1:(\d+)/0", output).group(1))
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", redis_port), timeout=1).close()  # the embedded Redis is gone
