"""The HTTP API without Redis: what it answers while Redis is down (the API on a real Redis is in
tests/integration/service/)."""

from __future__ import annotations

import socket
import time

from tests.unit.service.conftest import mp4_bytes


def test_redis_down_is_a_fast_503(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import ServiceSettings

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = ServiceSettings(redis_url=f"redis://127.0.0.1:{port}/0", storage_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        start = time.monotonic()
        assert client.get("/v1/jobs/abc").status_code == 503
        response = client.post("/v1/videos", files={"file": ("cam.mp4", mp4_bytes(), "application/octet-stream")})
        assert response.status_code == 503 and "Redis" in response.json()["detail"]
        assert client.get("/readyz").json()["redis"] is False
        assert client.get("/healthz").status_code == 200
        assert time.monotonic() - start < 5
    assert list(tmp_path.iterdir()) == []  # the upload was not left behind
