"""The HTTP API with TestClient over the real Redis (no workers: jobs stay queued)."""

from __future__ import annotations

import hashlib

import pytest

from tests.unit.service.conftest import mp4_bytes


def upload(client, data: bytes, headers: dict | None = None, **fields):
    return client.post("/v1/videos", files={"file": ("cam.mp4", data, "application/octet-stream")},
                       data={k: str(v) for k, v in fields.items()}, headers=headers or {})


def test_upload_creates_a_queued_job(client, settings) -> None:
    video = mp4_bytes(10_000)
    response = upload(client, video, threshold=0.3, frame_scores="true")
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"].endswith(f"/v1/jobs/{job['id']}")
    assert len(job["id"]) >= 24  # unguessable
    assert job["status"] == "queued" and job["queue_position"] == 0 and job["progress"]["stage"] == "queued"
    assert job["sha256"] == hashlib.sha256(video).hexdigest() and job["size_bytes"] == len(video)
    assert job["options"] == {"model": None, "threshold": 0.3, "frame_scores": True, "skip_unchanged": 0.0}
    stored = settings.storage_dir / job["id"] / "video"
    assert stored.read_bytes() == video
    again = client.get(f"/v1/jobs/{job['id']}").json()
    assert again["status"] == "queued" and again["filename"] == "cam.mp4"
    second = upload(client, mp4_bytes(10_000, seed=1)).json()
    assert client.get(f"/v1/jobs/{second['id']}").json()["queue_position"] == 1


def test_result_is_409_until_finished(client) -> None:
    job = upload(client, mp4_bytes()).json()
    response = client.get(f"/v1/jobs/{job['id']}/result")
    assert response.status_code == 409 and "queued" in response.json()["detail"]


def test_same_content_and_options_return_the_first_job(client, settings) -> None:
    first = upload(client, mp4_bytes(seed=5), threshold=0.4)
    dup = upload(client, mp4_bytes(seed=5), threshold=0.4)
    other = upload(client, mp4_bytes(seed=5), threshold=0.6)
    assert first.status_code == 202 and dup.status_code == 200 and other.status_code == 202
    assert dup.json()["id"] == first.json()["id"] and dup.json()["deduplicated"] is True
    assert other.json()["id"] != first.json()["id"]
    assert len(list(settings.storage_dir.iterdir())) == 2  # the duplicate upload was not kept


def test_oversize_and_wrong_type(client, settings) -> None:
    settings.storage_dir.mkdir(parents=True)  # as in a deployment, so that the check at the end always looks in it
    response = upload(client, mp4_bytes(2 * 1024 * 1024))
    assert response.status_code == 413
    chunked = client.post(  # no Content-Length: the cap must act while streaming
        "/v1/videos", headers={"content-type": "multipart/form-data; boundary=b"},
        content=iter([b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.mp4"\r\n\r\n',
                      mp4_bytes(600_000), mp4_bytes(600_000), b"\r\n--b--\r\n"]))
    assert chunked.status_code == 413
    assert upload(client, b"<html>not a video</html>" * 100).status_code == 415
    assert client.post("/v1/videos", content=mp4_bytes(), headers={"content-type": "video/mp4"}).status_code == 415
    assert list(settings.storage_dir.iterdir()) == []  # no rejected upload left a file or folder behind


@pytest.mark.parametrize(("fields", "message"), [
    ({"threshold": "2"}, "threshold"), ({"frame_scores": "maybe"}, "frame_scores"),
    ({"callback_url": "ftp://hooks.example.com/x"}, "http"),
    ({"callback_url": "https://evil.example.org/x"}, "allow-list"),
])
def test_invalid_options_are_422(client, fields: dict, message: str) -> None:
    response = upload(client, mp4_bytes(), **fields)
    assert response.status_code == 422 and message in response.json()["detail"]


def test_unknown_model_is_422_once_workers_announced_theirs(client, settings) -> None:
    store = client.app.state.store
    assert upload(client, mp4_bytes(seed=8), model="anything").status_code == 202  # no worker has announced yet
    store.redis.hset(store.keys.models, mapping={"default": "{}", "xd": "{}"})
    response = upload(client, mp4_bytes(seed=9), model="ucf")
    assert response.status_code == 422 and "default, xd" in response.json()["detail"]
    assert upload(client, mp4_bytes(seed=9), model="xd").status_code == 202


def test_delete_cancels_and_removes_everything(client, settings) -> None:
    job = upload(client, mp4_bytes()).json()
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert not (settings.storage_dir / job["id"]).exists()
    store = client.app.state.store
    assert store.queue_depth() == 0 and not list(store.redis.scan_iter(f"{settings.key_prefix}job:*"))
    assert upload(client, mp4_bytes()).status_code == 202  # dedup entry removed too


def test_unknown_job_is_404(client) -> None:
    assert client.get("/v1/jobs/nope").status_code == 404
    assert client.get("/v1/jobs/nope/result").status_code == 404
    assert client.delete("/v1/jobs/nope").status_code == 404


def test_api_keys_and_ownership(settings) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app

    settings.api_keys = ["key-a", "key-b"]
    with TestClient(create_app(settings)) as client:
        assert upload(client, mp4_bytes()).status_code == 401
        assert upload(client, mp4_bytes(), headers={"X-API-Key": "wrong"}).status_code == 401
        job = upload(client, mp4_bytes(), headers={"X-API-Key": "key-a"}).json()
        assert client.get(f"/v1/jobs/{job['id']}", headers={"X-API-Key": "key-a"}).status_code == 200
        assert client.get(f"/v1/jobs/{job['id']}", headers={"X-API-Key": "key-b"}).status_code == 404
        assert client.delete(f"/v1/jobs/{job['id']}", headers={"X-API-Key": "key-b"}).status_code == 404
        # the same video from another key is another job (dedup is per owner)
        other = upload(client, mp4_bytes(), headers={"X-API-Key": "key-b"})
        assert other.status_code == 202 and other.json()["id"] != job["id"]


def test_health_readiness_and_metrics(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json() == {"ready": False, "redis": True, "workers": 0,
                                                         "storage_writable": True, "code": "not_ready",
                                                         "detail": "not ready: no worker is alive"}
    upload(client, mp4_bytes())
    text = client.get("/metrics").text
    assert 'vad_http_requests_total{method="POST",route="/v1/videos",status="202"} 1.0' in text
    assert "vad_queue_depth 1.0" in text


def test_openapi_documents_the_result_schema(client) -> None:
    spec = client.get("/openapi.json").json()
    assert "AnalysisResult" in spec["components"]["schemas"]
    body = spec["paths"]["/v1/videos"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"]
