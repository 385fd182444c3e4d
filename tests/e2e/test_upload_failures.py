"""Uploads that go wrong on the wire, against a real uvicorn serving the API: raw sockets play the client.

A non-video is refused on its first bytes; a client that stops sending is cut off after the idle
timeout; a ``Content-Length`` that disagrees with the body gets a 4xx (or a closed connection when
the client is gone). Each leaves nothing behind: no upload folder, no job record, no 5xx.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.unit.service.conftest import mp4_bytes
from vad.cli.stack import _tcp_open, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

REDIS_URL = "redis://127.0.0.1:6379/0"
IDLE_TIMEOUT_S = 1.5
BOUNDARY = "vad-e2e-boundary"


@dataclass
class Api:
    port: int
    storage: Path
    prefix: str
    conn: redis.Redis
    log: Path

    def leftovers(self) -> list[str]:
        """Upload folders and job records that exist now."""
        folders = sorted(p.name for p in self.storage.iterdir()) if self.storage.exists() else []
        return folders + sorted(k.decode() for k in self.conn.scan_iter(f"{self.prefix}job:*"))


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    conn = redis.Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379 (scripts/ensure-redis.sh starts one)")
    root, tag, port = tmp_path_factory.mktemp("api"), secrets.token_hex(4), free_port()
    env = {**os.environ, "VAD_REDIS_URL": REDIS_URL, "VAD_KEY_PREFIX": f"e2e-{tag}:", "VAD_QUEUE_NAME": f"e2e-{tag}",
           "VAD_STORAGE_DIR": str(root / "uploads"), "VAD_UPLOAD_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S)}
    log = root / "api.log"
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory", "--port",
                                str(port)], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _tcp_open(port), 60, "the API", process)
        yield Api(port, root / "uploads", f"e2e-{tag}:", conn, log)
    finally:
        process.terminate()
        process.wait(timeout=20)
        keys = [*conn.scan_iter(f"e2e-{tag}:*"), *conn.scan_iter(f"*e2e-{tag}*")]
        if keys:
            conn.delete(*keys)
    assert "Exception in ASGI application" not in log.read_text(), log.read_text()


def _file_part(filename: str) -> bytes:
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()


def _closing() -> bytes:
    return f"\r\n--{BOUNDARY}--\r\n".encode()


def _connect(api: Api, content_length: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", api.port), timeout=10)
    sock.sendall((f"POST /v1/videos HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\n"
                  f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                  f"Content-Length: {content_length}\r\n\r\n").encode())
    return sock


def _read_all(sock: socket.socket, timeout_s: float) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout_s`` passes)."""
    data, deadline = b"", time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"the server did not answer and close within {timeout_s}s; got {data[:300]!r}")


def _wait_until_clean(api: Api, timeout_s: float = 10) -> None:
    """The server may still be cleaning up after a connection it dropped: wait (bounded) for nothing to be left."""
    deadline = time.monotonic() + timeout_s
    while api.leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.leftovers() == []


def _statuses(raw: bytes) -> list[int]:
    return [int(line.split()[1]) for line in raw.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


def test_a_10_mb_non_video_is_refused_on_its_first_bytes(api: Api) -> None:
    total = 10 * 1024 * 1024
    head = _file_part("notes.txt")
    sock = _connect(api, len(head) + total + len(_closing()))
    with sock:
        sock.sendall(head + b"plain text, not a video. " * 655)  # ~16 KiB of the 10 MiB
        sock.settimeout(10)
        try:
            first = sock.recv(65536)
        except TimeoutError:
            raise AssertionError("no answer after 16 KiB of 10 MiB: the server waits for the whole body") from None
        answer = first + _read_all(sock, 10)  # then the server closes: it reads no more of the body
        assert _statuses(answer) == [415], answer
        assert b"connection: close" in answer.lower()
        sent_after = 0
        with pytest.raises(OSError):  # the closed connection refuses the rest (EPIPE/ECONNRESET)
            for _ in range(total // 65536):
                sent_after += sock.send(b"x" * 65536)
                time.sleep(0.001)
        assert sent_after < total // 2
    assert api.leftovers() == []


def test_an_http_client_sending_all_of_it_still_reads_the_415(api: Api) -> None:
    # httpx writes the whole body before reading: the closed connection must not hide the answer from it
    response = httpx.post(f"http://127.0.0.1:{api.port}/v1/videos", timeout=30,
                          files={"file": ("notes.txt", b"plain text, not a video. " * 420_000)})
    assert response.status_code == 415 and "not a recognised video container" in response.json()["detail"]
    assert api.leftovers() == []


def test_a_stalled_upload_is_cut_off_after_the_idle_timeout(api: Api) -> None:
    video = mp4_bytes(1_000_000)
    head = _file_part("stalls.mp4")
    sock = _connect(api, len(head) + len(video) + len(_closing()))
    with sock:
        sock.sendall(head + video[:200_000])  # then the client stops sending, the connection stays open
        start = time.monotonic()
        answer = _read_all(sock, IDLE_TIMEOUT_S + 15)
        waited = time.monotonic() - start
    assert _statuses(answer) == [408], answer
    assert b"stalled" in answer and b"connection: close" in answer.lower()
    assert IDLE_TIMEOUT_S - 0.5 < waited < IDLE_TIMEOUT_S + 5
    assert api.leftovers() == []  # the partial file, its folder and any record are gone


def test_content_length_smaller_than_the_body(api: Api) -> None:
    body = _file_part("short.mp4") + mp4_bytes(50_000) + _closing()
    sock = _connect(api, len(body) - 1000)
    with sock:
        sock.sendall(body)
        answer = _read_all(sock, 15)
    statuses = _statuses(answer)
    # the surplus after the declared length is not HTTP: a 400 for it (maybe after our 400), never a 5xx
    assert statuses and all(s == 400 for s in statuses), answer
    _wait_until_clean(api)


def test_content_length_larger_than_the_body_and_the_client_gives_up(api: Api) -> None:
    body = _file_part("long.mp4") + mp4_bytes(50_000) + _closing()
    sock = _connect(api, len(body) + 100_000)
    with sock:
        sock.sendall(body)
        sock.shutdown(socket.SHUT_WR)  # nothing more will come: the client is done
        answer = _read_all(sock, 15)
    assert all(400 <= s < 500 for s in _statuses(answer)), answer  # a 4xx, or just the closed connection
    _wait_until_clean(api)


def test_a_complete_upload_still_works(api: Api) -> None:
    body = _file_part("fine.mp4") + mp4_bytes(50_000) + _closing()
    sock = _connect(api, len(body))
    with sock:
        sock.sendall(body)
        sock.settimeout(10)
        answer = sock.recv(65536)
    assert _statuses(answer) == [202], answer
    assert len(api.leftovers()) == 2  # its folder and its record
