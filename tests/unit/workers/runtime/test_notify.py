"""The callback sender connects only to the addresses the policy checked: no second DNS lookup to rebind."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from vad.jobstate import JobRecord, JobStatus
from workers.runtime.notify import send_callback
from workers.settings import WorkerSettings

real_getaddrinfo = socket.getaddrinfo


def rebinding_dns(name: str, first: str, later: str, calls: list[str]) -> Callable[..., Any]:
    """A resolver whose answer for ``name`` changes after the first lookup, as an attacker's DNS can."""

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real_getaddrinfo(host, port, *args, **kwargs)
        calls.append(host)
        address = first if len(calls) == 1 else later
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

    return getaddrinfo


def test_the_sender_connects_to_the_checked_public_address_not_a_rebound_one(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    connected: list[Any] = []

    def connect(self: socket.socket, address: Any) -> None:
        connected.append(address)
        raise ConnectionRefusedError("test: no traffic leaves this machine")

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns("hooks.example.com", "93.184.215.14", "127.0.0.1", calls))
    monkeypatch.setattr(socket.socket, "connect", connect)
    settings = WorkerSettings(callback_allowlist=["hooks.example.com"], callback_retries=1, callback_backoff_s=0)
    record = JobRecord(id="j", status=JobStatus.finished, callback_url="http://hooks.example.com/hook")
    assert send_callback(record, settings) is False
    assert calls == ["hooks.example.com"]  # resolved once, for the check
    assert [a[0] for a in connected] == ["93.184.215.14", "93.184.215.14"]  # both attempts to the checked address


def test_a_rebinding_name_still_reaches_the_checked_receiver(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real receiver: the pinned connection dials the checked IP and sends the host name in ``Host``."""
    hosts: list[str] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            hosts.append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)  # nothing listens on 127.0.0.2, where the name rebinds to
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    calls: list[str] = []
    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns("hooks.test", "127.0.0.1", "127.0.0.2", calls))
    settings = WorkerSettings(callback_allowlist=["hooks.test"], callback_allow_private=True, callback_retries=0)
    record = JobRecord(id="j", status=JobStatus.finished, callback_url=f"http://hooks.test:{port}/hook")
    try:
        assert send_callback(record, settings) is True
    finally:
        server.shutdown()
        server.server_close()
    assert calls == ["hooks.test"] and hosts == [f"hooks.test:{port}"]  # the name in Host, the checked IP dialled
