"""Webhook signatures and the callback policy's resolution (the torch-free contract)."""

from __future__ import annotations

import hashlib
import hmac
import socket
from typing import Any

import pytest
from pydantic import ValidationError

from vad.callbacks import check_callback_url, resolve_callback, sign, verify_signature
from vad.exceptions import CallbackRefused
from vad.settings import QueueSettings

SECRET = "0123456789abcdef-secret"


def test_the_signature_is_hmac_sha256_of_the_timestamp_and_the_body() -> None:
    body = b'{"job_id": "j"}'
    header = sign(SECRET, body, timestamp=1700000000)
    digest = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={digest}"
    assert verify_signature(SECRET, header, body, now=1700000010)
    assert not verify_signature(SECRET, header, body, now=1700000000 + 301)  # too old
    assert not verify_signature(SECRET, header, body, now=1700000000 - 301)  # from the future
    assert not verify_signature(SECRET, header, b'{"job_id": "k"}', now=1700000010)
    other = sign("another-secret-0123", body, timestamp=1700000000)
    assert verify_signature(SECRET, f"{other},v1={digest}", body, now=1700000010)  # any v1 may match (rotation)


@pytest.mark.parametrize("header", ["", "v1=ab", "t=abc,v1=ab", "t=1,t=2,v1=ab", "garbage"])
def test_malformed_signature_headers_do_not_verify(header: str) -> None:
    assert not verify_signature(SECRET, header, b"{}", now=1)


def test_resolution_pins_every_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"public.example": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
               "mixed.example": ["93.184.215.14", "10.0.0.5"]}

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    target = resolve_callback("https://Public.example/h?x=1", ["*.example"])
    assert (target.scheme, target.host, target.port, target.target) == ("https", "public.example", 443, "/h?x=1")
    assert target.addresses == tuple(answers["public.example"])
    with pytest.raises(CallbackRefused, match=r"internal address\(es\) 10\.0\.0\.5"):
        resolve_callback("http://mixed.example/h", ["*.example"])  # one internal address is enough to refuse
    assert resolve_callback("http://mixed.example:8080", ["*.example"], allow_private=True).port == 8080
    assert check_callback_url("http://mixed.example/h", ["*.example"], resolve=False) == "http://mixed.example/h"
    with pytest.raises(CallbackRefused, match="port"):
        check_callback_url("http://mixed.example:99999/h", ["*.example"])


def test_the_callback_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAD_CALLBACK_SECRET", SECRET)
    monkeypatch.setenv("VAD_CALLBACK_RETRIES", "5")
    settings = QueueSettings()
    assert settings.callback_secret is not None and settings.callback_secret.get_secret_value() == SECRET
    assert SECRET not in repr(settings) and settings.callback_retries == 5
    monkeypatch.setenv("VAD_CALLBACK_SECRET", "")
    assert QueueSettings().callback_secret is None
    monkeypatch.setenv("VAD_CALLBACK_SECRET", "short")
    with pytest.raises(ValidationError, match="at least 16 characters"):
        QueueSettings()
