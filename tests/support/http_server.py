"""HTTP and HTTPS servers on 127.0.0.1 for tests: a request handler served from a thread on a free port, TLS from
a self-signed certificate made with the ``openssl`` command."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


def self_signed_certificate(folder: Path, common_name: str, alt_names: str) -> tuple[Path, Path]:
    """A one-day self-signed certificate and its key in ``folder`` (``alt_names`` e.g. ``IP:127.0.0.1,DNS:x``);
    skips the test when the ``openssl`` command is missing."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", f"/CN={common_name}", "-addext", f"subjectAltName={alt_names}"],
                   check=True, capture_output=True)
    return cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A server-side TLS context presenting ``certificate`` (the certificate file and its key)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


@contextmanager
def serving(handler: Callable[..., BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None
            ) -> Iterator[ThreadingHTTPServer]:
    """``handler`` served on 127.0.0.1 at a free port (``server.server_address[1]``) from a thread, over TLS when
    ``tls`` is given; shut down and closed at the end."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
