"""Fetching a video source by URL against a real HTTPS server on 127.0.0.1 (a self-signed certificate, the
private-address allowance on): the allow-list, private addresses, redirects checked like the first URL, the size
cap, the stall timeout, answers that are retried or final, and a non-video refused on its first bytes."""

from __future__ import annotations

import hashlib
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.support.http_server import self_signed_certificate, server_tls, serving
from tests.unit.service.conftest import mp4_bytes
from vad.exceptions import SourceRefused, SourceUnavailable
from vad.settings import QueueSettings
from vad.storage import Scratch
from workers.runtime.fetch import fetch_source

VIDEO = mp4_bytes(300_000, seed=3)
CAP = 1 << 20


class Server:
    def __init__(self) -> None:
        self.port = 0
        self.sent: dict[str, int] = {}
        self.release = threading.Event()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"), "127.0.0.1", "IP:127.0.0.1,DNS:localhost")


@pytest.fixture(scope="module")
def server(certificate: tuple[Path, Path]) -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes = b"", length: int | None = None, **headers: str) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path, port = self.path, state.port
            redirects = {"/redirect-ok": "/video.mp4", "/redirect-out": f"https://127.0.0.2:{port}/video.mp4",
                         "/redirect-metadata": "https://169.254.169.254/latest/meta-data/",
                         "/redirect-http": f"http://127.0.0.1:{port}/video.mp4", "/loop": "/loop"}
            if path == "/video.mp4":
                self._send(200, VIDEO)
            elif path in redirects:
                self._send(302, Location=redirects[path])
            elif path == "/big-declared":
                self._send(200, length=CAP + 1)
            elif path in ("/big-undeclared", "/text"):
                block = (mp4_bytes(64 * 1024) if path == "/big-undeclared" else b"plain text, not a video. " * 2600)
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                state.sent[path] = 0
                try:
                    for _ in range(64):  # 4 MB over a few seconds, unless the client stops reading
                        self.wfile.write(block)
                        self.wfile.flush()
                        state.sent[path] += len(block)
                        time.sleep(0.05 if path == "/text" else 0)
                except OSError:
                    pass
                self.close_connection = True
            elif path == "/stall":
                self._send(200, VIDEO[:10_000], length=len(VIDEO))
                self.wfile.flush()
                state.release.wait(20)
            else:
                self._send(int(path.strip("/")) if path.strip("/").isdigit() else 404)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler, server_tls(certificate)) as httpd:
        state.port = httpd.server_address[1]
        try:
            yield state
        finally:
            state.release.set()


@pytest.fixture
def client_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def settings(**changes: Any) -> QueueSettings:
    base: dict[str, Any] = {"source_allowlist": ["127.0.0.1"], "source_allow_private": True,
                            "max_upload_mb": CAP / 2**20, "source_timeout_s": 5.0}
    return QueueSettings(**{**base, **changes})


def fetch(url: str, tls: ssl.SSLContext, tmp_path: Path, **changes: Any) -> bytes:
    with fetch_source(url, settings(**changes), Scratch(tmp_path), tls) as fetched:
        data = fetched.path.read_bytes()
        assert (fetched.size, fetched.sha256, fetched.container) == (len(data), hashlib.sha256(data).hexdigest(),
                                                                     "mp4")
    assert list(tmp_path.iterdir()) == []  # what was fetched is removed
    return data


def test_a_source_is_fetched_as_an_upload_would_be_stored(server: Server, client_tls: ssl.SSLContext,
                                                          tmp_path: Path) -> None:
    assert fetch(f"https://127.0.0.1:{server.port}/video.mp4", client_tls, tmp_path) == VIDEO
    assert fetch(f"https://127.0.0.1:{server.port}/redirect-ok", client_tls, tmp_path) == VIDEO


@pytest.mark.parametrize(("path", "changes", "message"), [
    ("/video.mp4", {"source_allow_private": False}, r"internal address\(es\) 127\.0\.0\.1"),
    ("/video.mp4", {"source_allowlist": ["videos.example.com"]}, "not in the allow-list"),
    ("/redirect-out", {}, "host '127.0.0.2' is not in the allow-list"),
    ("/redirect-metadata", {}, "host '169.254.169.254' is a cloud metadata address"),
    ("/redirect-http", {}, "must be an https URL"),
    ("/loop", {}, "redirects more than 5 times"),
    ("/big-declared", {}, "more than the limit"),
    ("/big-undeclared", {}, "larger than the limit"),
    ("/404", {}, "answered 404"),
])
def test_refused_sources(server: Server, client_tls: ssl.SSLContext, tmp_path: Path, path: str,
                         changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SourceRefused, match=message):
        fetch(f"https://127.0.0.1:{server.port}{path}", client_tls, tmp_path, **changes)
    assert list(tmp_path.iterdir()) == []


def test_a_non_video_is_refused_on_its_first_bytes(server: Server, client_tls: ssl.SSLContext,
                                                   tmp_path: Path) -> None:
    with pytest.raises(SourceRefused, match="not a recognised video container"):
        fetch(f"https://127.0.0.1:{server.port}/text", client_tls, tmp_path, max_upload_mb=100)
    time.sleep(0.3)  # the server notices the closed connection at its next write
    assert server.sent["/text"] < 8 * 65_000  # a few of its blocks, far from the 4 MB it would have sent


@pytest.mark.parametrize(("path", "message"), [("/503", "answered 503"), ("/stall", "timed out")])
def test_transient_failures_are_retried(server: Server, client_tls: ssl.SSLContext, tmp_path: Path, path: str,
                                        message: str) -> None:
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match=message):
        fetch(f"https://127.0.0.1:{server.port}{path}", client_tls, tmp_path, source_timeout_s=0.5)
    assert time.monotonic() - started < 5


def test_an_untrusted_certificate_is_refused(server: Server, tmp_path: Path) -> None:
    with pytest.raises(SourceRefused, match="certificate refused"):
        fetch(f"https://127.0.0.1:{server.port}/video.mp4", ssl.create_default_context(), tmp_path)


def test_sources_off_and_other_schemes(tmp_path: Path) -> None:
    with pytest.raises(SourceRefused, match="videos by URL are off"):
        fetch("https://127.0.0.1/v.mp4", ssl.create_default_context(), tmp_path, source_allowlist=[])
    for url in ("http://127.0.0.1/v.mp4", "file:///etc/passwd", "/etc/passwd", "ftp://127.0.0.1/v"):
        with pytest.raises(SourceRefused, match="https:// URL or s3://bucket/key"):
            fetch(url, ssl.create_default_context(), tmp_path)
