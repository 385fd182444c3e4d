"""Job callbacks against a real HTTP(S) receiver on 127.0.0.1: signatures, retries, the pinned connection."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.support.http_server import self_signed_certificate, server_tls, serving
from vad.callbacks import SIGNATURE_HEADER, verify_signature
from vad.jobstate import JobRecord, JobStatus
from vad.net.policy import Target
from workers.runtime.notify import post, send_callback
from workers.settings import WorkerSettings

SECRET = "s3cret-for-tests-0123456789"


@dataclass
class Receiver:
    """What a test receiver answers (one status per request, the last repeated) and what it got."""

    statuses: list[int]
    hold_first: threading.Event | None = None  # the first request waits on it (a receiver that times out)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    def answer(self) -> int:
        index = min(len(self.requests) - 1, len(self.statuses) - 1)
        return self.statuses[index]


@contextmanager
def receiving(receiver: Receiver, tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.requests.append((dict(self.headers.items()), body))
            if len(receiver.requests) == 1 and receiver.hold_first is not None:
                receiver.hold_first.wait(10)
            self.send_response(receiver.answer())
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler, tls) as server:
        receiver.port = server.server_address[1]
        try:
            yield receiver
        finally:
            if receiver.hold_first is not None:
                receiver.hold_first.set()


def _settings(**changes: Any) -> WorkerSettings:
    base: dict[str, Any] = {"callback_allowlist": ["127.0.0.1"], "callback_allow_private": True,
                               "callback_backoff_s": 0.01, "callback_timeout_s": 5.0}
    return WorkerSettings(**{**base, **changes})


def _record(port: int) -> JobRecord:
    return JobRecord(id="j1", status=JobStatus.finished, sha256="ab", filename="v.mp4",
                     callback_url=f"http://127.0.0.1:{port}/hook?x=1")


def test_a_signed_callback_verifies_against_the_exact_body() -> None:
    with receiving(Receiver([204])) as receiver:
        assert send_callback(_record(receiver.port), _settings(callback_secret=SECRET)) is True
    (headers, body), = receiver.requests
    assert json.loads(body) == {"job_id": "j1", "status": "finished", "error": None, "sha256": "ab",
                                "filename": "v.mp4"}
    header = headers[SIGNATURE_HEADER]
    stamp = int(header.split(",")[0].removeprefix("t="))
    assert verify_signature(SECRET, header, body)
    assert not verify_signature(SECRET, header, body.replace(b"finished", b"failed"))  # tampered body
    assert not verify_signature(SECRET, header, body + b" ")  # not even a byte more
    assert not verify_signature("another-secret-0123456789", header, body)
    assert not verify_signature(SECRET, header, body, tolerance_s=300, now=stamp + 301)  # an old delivery replayed
    assert verify_signature(SECRET, header, body, tolerance_s=300, now=stamp + 299)


def test_without_a_secret_the_callback_is_sent_unsigned() -> None:
    with receiving(Receiver([200])) as receiver:
        assert send_callback(_record(receiver.port), _settings()) is True
    assert SIGNATURE_HEADER not in receiver.requests[0][0]


def test_server_errors_are_retried_until_one_succeeds() -> None:
    with receiving(Receiver([500, 503, 204])) as receiver:
        assert send_callback(_record(receiver.port), _settings(callback_secret=SECRET, callback_retries=3)) is True
    assert len(receiver.requests) == 3
    assert len({body for _, body in receiver.requests}) == 1  # the same body each time, each attempt signed
    assert all(verify_signature(SECRET, headers[SIGNATURE_HEADER], body) for headers, body in receiver.requests)


def test_a_client_error_is_not_retried() -> None:
    with receiving(Receiver([400, 204])) as receiver:
        assert send_callback(_record(receiver.port), _settings(callback_retries=3)) is False
    assert len(receiver.requests) == 1


def test_a_receiver_that_always_fails_gets_a_bounded_number_of_attempts() -> None:
    with receiving(Receiver([500])) as receiver:
        assert send_callback(_record(receiver.port), _settings(callback_retries=2)) is False
    assert len(receiver.requests) == 3


def test_a_timeout_is_retried() -> None:
    with receiving(Receiver([204], hold_first=threading.Event())) as receiver:
        assert send_callback(_record(receiver.port), _settings(callback_timeout_s=0.3, callback_retries=1)) is True
    assert len(receiver.requests) == 2


def test_redirects_are_not_followed() -> None:
    with receiving(Receiver([302])) as receiver:
        assert send_callback(_record(receiver.port), _settings(callback_retries=3)) is False
    assert len(receiver.requests) == 1


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for the name hooks.test (no address in it)."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"), "hooks.test", "DNS:hooks.test")


def test_https_connects_to_the_checked_address_and_verifies_the_host_name(certificate: tuple[Path, Path]) -> None:
    cert = certificate[0]
    tls = server_tls(certificate)
    names: list[str | None] = []
    tls.sni_callback = lambda _sock, name, _ctx: names.append(name)
    client_tls = ssl.create_default_context(cafile=str(cert))
    with receiving(Receiver([204]), tls=tls) as receiver:
        pinned = Target(f"https://hooks.test:{receiver.port}/hook", "https", "hooks.test", receiver.port,
                        "/hook", ("127.0.0.1",))  # hooks.test resolves nowhere: only the pin leads here
        assert post(pinned, b"{}", {"Content-Type": "application/json"}, 5.0, client_tls) == 204
        assert names == ["hooks.test"] and receiver.requests[0][0]["Host"] == f"hooks.test:{receiver.port}"
        impostor = Target(f"https://other.test:{receiver.port}/hook", "https", "other.test", receiver.port,
                          "/hook", ("127.0.0.1",))
        with pytest.raises(ssl.SSLCertVerificationError):
            post(impostor, b"{}", {}, 5.0, client_tls)  # the certificate is checked against the name, not the IP
    assert len(receiver.requests) == 1
