"""The API against the machine's real Redis, isolated by a unique key prefix and queue name.

``settings`` and ``client`` use the ``live_redis`` fixture, so every test that uses them is marked ``integration``
(tests/conftest.py; every test under tests/integration is, anyway).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REDIS_URL


@pytest.fixture
def settings(tmp_path: Path, live_redis):
    from service.settings import ServiceSettings

    tag = secrets.token_hex(4)
    return ServiceSettings(redis_url=REDIS_URL, key_prefix=f"test-{tag}:", queue_name=f"test-{tag}",
                           storage_dir=tmp_path / "uploads", max_upload_mb=1.0, api_keys=[],
                           callback_allowlist=["hooks.example.com"])


@pytest.fixture
def client(settings) -> Iterator:
    from fastapi.testclient import TestClient

    from service.app import create_app

    app = create_app(settings)
    with TestClient(app) as test_client:
        yield test_client
    store = app.state.store
    keys = [*store.redis.scan_iter(f"{settings.key_prefix}*"), *store.redis.scan_iter(f"*{settings.queue_name}*")]
    if keys:
        store.redis.delete(*keys)


@pytest.fixture
def app_client(settings) -> Iterator:
    """A client of an app with two API keys (``key-a``, ``key-b``) and streams allowed from 127.0.0.1."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    settings.stream_allowlist = ["127.0.0.1/32"]
    settings.api_keys = ["key-a", "key-b"]
    app = create_app(settings)
    with TestClient(app) as client:
        yield client
    redis = app.state.store.redis
    found = list(redis.scan_iter(f"{settings.key_prefix}*"))
    if found:
        redis.delete(*found)
