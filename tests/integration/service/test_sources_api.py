"""``POST /v1/videos`` with a JSON body ``{"source": ...}``: checked by the deployment's allow-lists, queued as a job
the worker fetches; the OpenAPI document declares the JSON body only where sources are on."""

from __future__ import annotations

import json

import pytest

from vad.jobstate import JobRecord
from vad.keys import Keys


def post_source(client, body: object, **headers: str):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/v1/videos", content=content, headers={"content-type": "application/json", **headers})


@pytest.fixture
def sources_on(settings):
    settings.source_allowlist = ["127.0.0.1", "*.videos.test"]
    settings.source_allow_private = True
    settings.source_buckets = ["media", "cams/lobby/*"]
    return settings


def test_sources_are_off_without_an_allow_list(client) -> None:
    response = post_source(client, {"source": "https://127.0.0.1/a.mp4"})
    assert response.status_code == 422 and "videos by URL are off" in response.json()["detail"]


def test_a_source_becomes_a_queued_job_the_worker_fetches(client, sources_on) -> None:
    response = post_source(client, {"source": "https://127.0.0.1:8443/clips/cam%201.mp4?sig=abc", "threshold": 0.3,
                                    "frame_scores": True, "model": "", "skip_unchanged": 4})
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"].endswith(f"/v1/jobs/{job['id']}")
    assert job["status"] == "queued" and job["filename"] == "cam 1.mp4" and job["sha256"] == ""
    assert job["options"] == {"model": None, "threshold": 0.3, "frame_scores": True, "skip_unchanged": 4.0}
    store = client.app.state.store
    record = JobRecord.from_redis(store.redis.hgetall(Keys(sources_on.key_prefix).job(job["id"])))
    assert record.source_url == "https://127.0.0.1:8443/clips/cam%201.mp4?sig=abc" and record.video_ref == ""
    assert record.dedup_key is None  # set by the worker once the content is known
    again = post_source(client, {"source": "s3://media/cams/a.mp4"})
    assert again.status_code == 202 and again.json()["id"] != job["id"]  # no dedup before the content is known


@pytest.mark.parametrize(("body", "message"), [
    ({"source": "https://evil.example/a.mp4"}, "not in the allow-list"),
    ({"source": "http://127.0.0.1/a.mp4"}, "https:// URL or s3://bucket/key"),
    ({"source": "file:///etc/passwd"}, "https:// URL or s3://bucket/key"),
    ({"source": "s3://other/a.mp4"}, "VAD_SOURCE_BUCKETS"),
    ({"source": "s3://cams/hall/a.mp4"}, "VAD_SOURCE_BUCKETS"),
    ({"source": "s3://media/"}, "names one object"),
    ({"source": "https://127.0.0.1/a.mp4", "threshold": 2}, "threshold"),
    ({"source": "https://127.0.0.1/a.mp4", "frame_scores": "yes"}, "frame_scores"),
    ({"source": "https://127.0.0.1/a.mp4", "extra": 1}, "extra"),
    ({"source": "https://127.0.0.1/a.mp4", "callback_url": "https://elsewhere.test/h"}, "callback"),
    ({"threshold": 0.5}, "source"),
    (b"{not json", "JSON"),
])
def test_refused_sources_and_options_are_422(client, sources_on, body: object, message: str) -> None:
    response = post_source(client, body)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"] and response.json()["code"] == "invalid_option"


def test_an_allowed_s3_pattern_is_accepted(client, sources_on) -> None:
    assert post_source(client, {"source": "s3://cams/lobby/2026/a.mp4"}).status_code == 202


def test_a_json_body_is_bounded(client, sources_on) -> None:
    response = post_source(client, {"source": "https://127.0.0.1/" + "a" * 70_000})
    assert response.status_code == 413


def test_the_json_body_is_declared_only_where_sources_are_on(settings) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app

    with TestClient(create_app(settings)) as client:
        off = client.get("/openapi.json").json()["paths"]["/v1/videos"]["post"]["requestBody"]["content"]
    assert set(off) == {"multipart/form-data"}
    settings.source_allowlist, settings.source_buckets = ["media.test"], ["clips"]
    with TestClient(create_app(settings)) as client:
        on = client.get("/openapi.json").json()["paths"]["/v1/videos"]["post"]["requestBody"]["content"]
    assert set(on) == {"multipart/form-data", "application/json"}
    schema = on["application/json"]["schema"]
    assert schema["required"] == ["source"] and schema["additionalProperties"] is False
    pattern = schema["properties"]["source"]["pattern"]
    assert r"https://(media\.test)" in pattern and "s3://(?!.*/$)clips/.+" in pattern
