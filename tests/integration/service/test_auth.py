"""API keys: compared as bytes in constant time; a key that matches none is a 401, never a 500.

Requests go through ``httpx.ASGITransport``, which hands the header bytes to the app as sent (the TestClient
re-encodes them as UTF-8, so it cannot send a latin-1 key).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.unit.service.conftest import mp4_bytes

KEYS = ["key-a", "clé-b"]


@pytest.fixture(autouse=True)
def _remove_keys(settings):
    yield
    from service.store import connect

    conn = connect(settings)
    keys = [*conn.scan_iter(f"{settings.key_prefix}*"), *conn.scan_iter(f"*{settings.queue_name}*")]
    if keys:
        conn.delete(*keys)


def send(settings, *requests: tuple[str, str, bytes | None]) -> list[httpx.Response]:
    """Send ``(method, path, X-API-Key)`` requests (uploads for POST) to a fresh app; the responses."""
    from service.app import create_app

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            answers = []
            for method, path, key in requests:
                headers = {"X-API-Key": key} if key is not None else {}
                files = {"file": ("v.mp4", mp4_bytes())} if method == "POST" else None
                answers.append(await client.request(method, path, headers=headers, files=files))
            return answers

    return asyncio.run(run())


@pytest.mark.parametrize("key", ["été".encode("latin-1"), "été".encode(), "clé-b".encode("latin-1"), b"key-a\xe9",
                                 b"\xff", b"", None])
def test_a_key_that_matches_none_is_401(settings, key: bytes | None) -> None:
    settings.api_keys = KEYS
    for response in send(settings, ("GET", "/v1/jobs/abc", key), ("POST", "/v1/videos", key),
                         ("DELETE", "/v1/jobs/abc", key)):
        assert response.status_code == 401, response.text
        assert response.json() == {"detail": "a valid X-API-Key header is required", "code": "unauthorized"}


def test_valid_keys_ascii_and_utf8_are_accepted(settings) -> None:
    settings.api_keys = KEYS
    unknown, upload = send(settings, ("GET", "/v1/jobs/abc", b"key-a"), ("POST", "/v1/videos", "clé-b".encode()))
    assert unknown.status_code == 404  # authenticated, no such job
    assert upload.status_code == 202, upload.text
    job = upload.json()["id"]
    own, other = send(settings, ("GET", f"/v1/jobs/{job}", "clé-b".encode()), ("GET", f"/v1/jobs/{job}", b"key-a"))
    assert own.status_code == 200 and other.status_code == 404


def test_without_keys_any_header_is_ignored(settings) -> None:
    (response,) = send(settings, ("GET", "/v1/jobs/abc", "été".encode("latin-1")))
    assert response.status_code == 404
