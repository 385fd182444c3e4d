"""Evidence of an uploaded video's events (issue 19 item 1), end to end: a real worker job (the demo model on a
held-out video with an injected event) writes each event's snapshot, thumbnail and clip; the real API serves
them with range requests to the key that owns the job only; deleting the job deletes them."""

from __future__ import annotations

import json
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.publish import missing_tools
from vad.evidence import evidence_key
from vad.jobstate import JobRecord
from vad.storage.evidence import read_meta

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def demo(demo_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The demo model and one held-out video with an injected event."""
    if missing_tools("ffmpeg", "ffprobe"):
        pytest.skip("ffmpeg not installed: run `bash scripts/ensure-ffmpeg.sh`")
    from workers.demo.build import generate
    from workers.demo.recipe import DemoRecipe, plan_videos

    recipe = DemoRecipe()
    plan = next(p for p in plan_videos(recipe, "heldout") if p.events)
    (video,) = generate(recipe, [plan], tmp_path_factory.mktemp("evidence")).values()
    return demo_bundle, video


@pytest.fixture
def stack(demo: tuple[Path, Any], tmp_path: Path, live_redis: Any) -> Iterator[dict[str, Any]]:
    """A worker context and the API on one Redis prefix and one storage directory, with two API keys."""
    from fastapi.testclient import TestClient

    import workers.runtime.context as module
    from service.app import create_app
    from service.settings import ServiceSettings
    from workers.runtime.context import JobContext
    from workers.settings import WorkerSettings

    prefix, storage = f"test-{secrets.token_hex(4)}:", tmp_path / "storage"
    worker = WorkerSettings(key_prefix=prefix, storage_dir=storage, bundle=demo[0], device="cpu",
                            clip_precision="fp32", frame_pick="middle", crop="auto", resize=None,
                            evidence_pre_roll_s=2.0, evidence_post_roll_s=2.0)
    context = JobContext(worker, live_redis)
    previous, module._context = module._context, context
    api = ServiceSettings(key_prefix=prefix, storage_dir=storage, queue_name=f"test-{prefix}", api_keys=["key-one",
                                                                                                          "key-two"])
    try:
        with TestClient(create_app(api)) as client:
            yield {"ctx": context, "client": client, "storage": context.storage}
    finally:
        module._context = previous
        found = list(live_redis.scan_iter(f"{prefix}*"))
        if found:
            live_redis.delete(*found)


def _probe(data: bytes, tmp_path: Path) -> dict:
    path = tmp_path / f"{uuid.uuid4()}.mp4"
    path.write_bytes(data)
    return json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name",
                                      "-of", "json", str(path)], check=True, capture_output=True, text=True).stdout)


def test_a_jobs_events_get_evidence_served_with_ranges_to_their_owner_and_deleted_with_the_job(
        demo: tuple[Path, Any], stack: dict[str, Any], tmp_path: Path) -> None:
    from service.store import owner_id
    from workers.runtime.jobs import analyze_job

    _, video = demo
    ctx, client, storage = stack["ctx"], stack["client"], stack["storage"]
    job_id = str(uuid.uuid4())
    upload = ctx.settings.storage_dir / job_id / "video"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(video.path.read_bytes())
    record = JobRecord(id=job_id, owner=owner_id("key-one"), video_ref=str(upload), filename="cam.mp4")
    ctx.redis.hset(ctx.keys.job(job_id), mapping=record.to_redis())

    outcome = analyze_job(job_id)
    assert outcome.get("events", 0) >= 1, outcome
    result = json.loads(ctx.redis.get(ctx.keys.result(job_id)))
    one = {"X-API-Key": "key-one"}
    for event in result["events"]:
        assert uuid.UUID(event["id"]).version == 4
        meta = read_meta(storage, event["id"])
        assert meta is not None and meta.source == "job" and meta.source_id == job_id
        assert meta.peak_s is not None and event["start_s"] <= meta.peak_s <= event["end_s"]
    event = max(result["events"], key=lambda e: e["end_s"] - e["start_s"])
    base = f"/v1/events/{event['id']}"

    clip = client.get(f"{base}/clip.mp4", headers=one)
    assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4"
    assert clip.headers["accept-ranges"] == "bytes" and int(clip.headers["content-length"]) == len(clip.content)
    probe = _probe(clip.content, tmp_path)
    duration = float(probe["format"]["duration"])
    wanted = min(video.duration_s, event["end_s"] + 2.0) - max(0.0, event["start_s"] - 2.0)
    assert wanted - 0.1 <= duration <= wanted + 1.0, (duration, wanted)  # from the keyframe before: within a GOP
    size = len(clip.content)
    meta = read_meta(storage, event["id"])
    assert meta is not None and meta.clip_start_s is not None and meta.clip_end_s is not None
    assert float(clip.headers["x-clip-start-s"]) == pytest.approx(meta.clip_start_s, abs=1e-3)  # the clip's time 0
    assert float(clip.headers["x-clip-end-s"]) == pytest.approx(meta.clip_end_s, abs=1e-3)

    part = client.get(f"{base}/clip.mp4", headers={**one, "Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == clip.content[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{size}"
    tail = client.get(f"{base}/clip.mp4", headers={**one, "Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == clip.content[-50:]
    open_ended = client.get(f"{base}/clip.mp4", headers={**one, "Range": f"bytes={size - 10}-"})
    assert open_ended.status_code == 206 and open_ended.content == clip.content[-10:]
    beyond = client.get(f"{base}/clip.mp4", headers={**one, "Range": f"bytes={size}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    assert beyond.json()["code"] == "range_not_satisfiable"

    snapshot = client.get(f"{base}/snapshot.jpg", headers=one)
    thumbnail = client.get(f"{base}/thumbnail.jpg", headers=one)
    assert snapshot.status_code == thumbnail.status_code == 200
    assert snapshot.content[:3] == thumbnail.content[:3] == b"\xff\xd8\xff"  # JPEG
    assert snapshot.headers["content-type"] == "image/jpeg"

    other = client.get(f"{base}/clip.mp4", headers={"X-API-Key": "key-two"})
    assert other.status_code == 404 and set(other.json()) == {"detail", "code"}
    assert client.get(f"{base}/clip.mp4").status_code == 401
    assert client.get("/v1/events/not-a-uuid/clip.mp4", headers=one).status_code == 422
    assert client.get(f"/v1/events/{uuid.uuid4()}/clip.mp4", headers=one).status_code == 404

    assert client.delete(f"/v1/jobs/{job_id}", headers=one).status_code == 204
    assert client.get(f"{base}/clip.mp4", headers=one).status_code == 404
    for gone in result["events"]:
        assert storage.object_size(evidence_key(gone["id"], "clip.mp4")) is None
    assert ctx.redis.exists(ctx.keys.job(job_id)) == 0
