"""A worker process dies with its supervisor (real processes: a stand-in supervisor killed with SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux")]

# The stand-in supervisor starts a child that calls die_with_supervisor, says so and sleeps; it prints the child's pid
# and waits. Both print to the same pipe.
SUPERVISOR = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid())])
print(child.pid, flush=True)
time.sleep(60)
"""
CHILD = """
import sys, time
from workers.runtime.worker_process import die_with_supervisor
print("ok" if die_with_supervisor(int(sys.argv[1])) else "gone", flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_the_worker_process_is_killed_when_its_supervisor_is() -> None:
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR, CHILD], stdout=subprocess.PIPE, text=True,
                                  cwd=Path(__file__).parents[4])
    assert supervisor.stdout is not None
    child = int(supervisor.stdout.readline())
    try:
        assert supervisor.stdout.readline().strip() == "ok"  # the child asked to die with its parent
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(child), "the child outlived its killed parent"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_parent_already_gone_is_noticed() -> None:
    # in a child of ours: the kill request must not outlive the test in this process
    code = "import os; from workers.runtime.worker_process import die_with_supervisor as d; "
    check = subprocess.run([sys.executable, "-c", code + "print(d(os.getppid()), d(os.getppid() + 10**7))"],
                           capture_output=True, text=True, cwd=Path(__file__).parents[4], timeout=30)
    assert check.stdout.split() == ["True", "False"], check.stderr  # not its parent: "it died before we asked"
