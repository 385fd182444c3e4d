"""Webhook signatures and the callback settings (the torch-free contract)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pydantic import ValidationError

from vad.callbacks import sign, verify_signature
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
