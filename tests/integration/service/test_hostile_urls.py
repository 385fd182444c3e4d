"""The hostile URL table (tests/support/hostile_urls.py) against the API's checks, the level where a client meets
them: ``POST /v1/videos`` with ``{"source": ...}`` or a ``callback_url``, ``POST /v1/streams`` with a ``url`` or a
``callback_url``. Every row is a 422 that names the host and quotes no credential; nothing is queued or stored."""

from __future__ import annotations

import pytest

from tests.support.hostile_urls import HOSTILE, SECRET_WORDS, STRICT, ids

GOOD_STREAM = "rtsp://203.0.113.9/stream1"


@pytest.fixture
def strict_client(settings):
    from fastapi.testclient import TestClient

    from service.app import create_app

    for name, value in STRICT.items():
        setattr(settings, name, value)
    app = create_app(settings)
    with TestClient(app) as client:
        yield client
    redis = app.state.store.redis
    found = [*redis.scan_iter(f"{settings.key_prefix}*"), *redis.scan_iter(f"*{settings.queue_name}*")]
    if found:
        redis.delete(*found)


@pytest.mark.parametrize(("url", "what"), HOSTILE, ids=ids(HOSTILE))
def test_the_api_refuses_every_hostile_url_in_every_field(strict_client, url: str, what: str) -> None:
    requests = [
        ("/v1/videos", {"source": url}),
        ("/v1/videos", {"source": "s3://media/a.mp4", "callback_url": url}),
        ("/v1/streams", {"url": url}),
        ("/v1/streams", {"url": GOOD_STREAM, "callback_url": url}),
    ]
    for path, body in requests:
        response = strict_client.post(path, json=body)
        assert response.status_code == 422, (path, body, response.text)
        detail = response.json()["detail"]
        assert "host" in detail and not any(word in detail for word in SECRET_WORDS), detail
    redis, prefix = strict_client.app.state.store.redis, strict_client.app.state.settings.key_prefix
    assert not list(redis.scan_iter(f"{prefix}job:*")) and not list(redis.scan_iter(f"{prefix}stream:*"))


def test_the_same_requests_with_good_urls_are_accepted(strict_client) -> None:
    """The refusals above come from the hostile URLs, not from the requests around them."""
    assert strict_client.post("/v1/videos", json={"source": "s3://media/a.mp4"}).status_code == 202
    assert strict_client.post("/v1/streams", json={"url": GOOD_STREAM}).status_code == 201
