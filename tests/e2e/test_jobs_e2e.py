"""Jobs through the real stack (see ``conftest.py``): a job deleted at any stage is gone for the API at once and,
once the worker has noticed, from Redis (ours and RQ's) and the disk, and the worker goes on; what a user reads
of a damaged upload names it by its file name and shows no path of the server.

These tests use the session's shared stack, whose worker runs with the hook of ``hold/sitecustomize.py``: it holds a
job at a chosen stage until released.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Service
from vad.storage.evidence import TOMBSTONE_S

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PATH_TOKEN = re.compile(r"/[\w.-]+/")
NOTICE_S = 10.0  # the worker notices a delete at its next progress write (every 0.5 s), then cleans up
_thresholds = itertools.count(5)


def threshold() -> float:
    """A threshold no other upload of this module used: every upload is a new job (no dedup)."""
    return next(_thresholds) / 100


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from workers.synthetic import make_video

    root = tmp_path_factory.mktemp("videos")
    make_video(root / "clip.mp4", duration_s=4, fps=25, size=(96, 64), seed=3)
    make_video(root / "faststart.mp4", frames=100, faststart=True, seed=5)
    whole = (root / "faststart.mp4").read_bytes()
    (root / "holiday.mp4").write_bytes(whole[: len(whole) // 2])  # a cut upload: decodes, with warnings
    (root / "broken.mp4").write_bytes(whole[:64] + os.urandom(20_000))  # an MP4 header, then garbage
    return {p.stem: p for p in root.iterdir()}


@contextmanager
def held(service: Service, stage: str) -> Iterator[None]:
    """Jobs reaching ``stage`` wait inside the worker until the block ends."""
    prefix = service.env["VAD_KEY_PREFIX"]
    service.conn.delete(f"{prefix}test:held")
    service.conn.set(f"{prefix}test:hold", stage)
    try:
        yield
    finally:
        service.conn.delete(f"{prefix}test:hold")


def wait_held(service: Service, job_id: str, stage: str, timeout_s: float = 120) -> None:
    key = f"{service.env['VAD_KEY_PREFIX']}test:held"
    deadline = time.monotonic() + timeout_s
    while service.conn.get(key) != f"{job_id} {stage}".encode():
        assert time.monotonic() < deadline, f"job {job_id} never reached {stage}"
        time.sleep(0.02)


def upload(service: Service, video: Path) -> str:
    response = service.upload(video, threshold=threshold())
    assert response.status_code == 202, response.text
    return response.json()["id"]


def assert_gone_for_the_api(service: Service, job_id: str) -> None:
    for method, path in [("GET", f"/v1/jobs/{job_id}"), ("GET", f"/v1/jobs/{job_id}/result"),
                         ("DELETE", f"/v1/jobs/{job_id}")]:
        answer = httpx.request(method, f"{service.url}{path}", timeout=10)
        assert answer.status_code == 404, (method, path, answer.status_code, answer.text)


def leftovers(service: Service, job_id: str) -> list[str]:
    """Everything of the job still in Redis (key names, registry and queue entries) or on disk; the evidence
    tombstone, which expires, is not."""
    conn, found = service.conn, []
    tombstone = f"{service.env['VAD_KEY_PREFIX']}evidence:deleted:job:{job_id}"  # for a late evidence writer
    found += [k.decode() for k in conn.scan_iter(f"{service.env['VAD_KEY_PREFIX']}*{job_id}*")
              if k.decode() != tombstone or not 0 < conn.ttl(k) <= TOMBSTONE_S]  # it must expire
    found += [k.decode() for k in conn.scan_iter(f"rq:*{job_id}*")]
    for key in conn.scan_iter(f"rq:*{service.queue}*"):
        kind = conn.type(key)
        members = (conn.zrange(key, 0, -1) if kind == b"zset" else conn.lrange(key, 0, -1) if kind == b"list"
                   else conn.smembers(key) if kind == b"set" else [])
        found += [f"{key.decode()} ∋ {m.decode()}" for m in members if job_id.encode() in m]
    if (Path(service.env["VAD_STORAGE_DIR"]) / job_id).exists():
        found.append("the upload folder")
    if (Path(service.env["VAD_STORAGE_DIR"]) / ".features" / f"{job_id}.npy").exists():
        found.append("its saved features")
    owner_events = conn.zrange(f"{service.env['VAD_KEY_PREFIX']}events:owner:", 0, -1)  # no API keys: owner ''
    found += [f"its event {m.decode()}" for m in owner_events
              if conn.hget(f"{service.env['VAD_KEY_PREFIX']}event:{m.decode().partition(':')[2]}", "source_id")
              == json.dumps(job_id).encode()]
    return found


def wait_idle(service: Service) -> float:
    """Wait (bounded) until the worker has ended the job it was running and is idle; return how long it took."""
    from rq import Queue, Worker

    queue = Queue(service.queue, connection=service.conn)
    start = time.monotonic()
    while any(w.get_state() != "idle" for w in Worker.all(queue=queue)):
        assert time.monotonic() - start < NOTICE_S, f"the worker is still busy after {NOTICE_S} s"
        time.sleep(0.02)
    return time.monotonic() - start


def assert_the_worker_goes_on(service: Service, videos: dict[str, Path]) -> None:
    job = service.wait(upload(service, videos["clip"]))
    assert job["status"] == "finished", job


@pytest.mark.parametrize("stage", ["decoding", "encoding", "scoring", "done", "finished"])
def test_delete_at_a_stage_leaves_nothing(service: Service, videos: dict[str, Path], stage: str) -> None:
    with held(service, stage):
        job_id = upload(service, videos["clip"])
        wait_held(service, job_id, stage)
        if stage == "finished":
            assert httpx.get(f"{service.url}/v1/jobs/{job_id}").json()["status"] == "finished"
        assert httpx.delete(f"{service.url}/v1/jobs/{job_id}").status_code == 204
        assert_gone_for_the_api(service, job_id)
    seconds = wait_idle(service)
    print(f"{stage}: the worker was done with the deleted job {seconds:.2f} s after the release")
    assert leftovers(service, job_id) == []
    assert_gone_for_the_api(service, job_id)
    assert_the_worker_goes_on(service, videos)
    assert not leftovers(service, job_id)  # nothing came back while the worker ran the next job


def test_delete_of_a_queued_job_leaves_nothing(service: Service, videos: dict[str, Path]) -> None:
    with held(service, "encoding"):
        busy = upload(service, videos["clip"])
        wait_held(service, busy, "encoding")
        job_id = upload(service, videos["clip"])
        assert httpx.get(f"{service.url}/v1/jobs/{job_id}").json()["status"] == "queued"
        assert httpx.delete(f"{service.url}/v1/jobs/{job_id}").status_code == 204
        assert_gone_for_the_api(service, job_id)
        assert leftovers(service, job_id) == []
    assert service.wait(busy)["status"] == "finished"
    assert_the_worker_goes_on(service, videos)
    assert not leftovers(service, job_id)


def assert_no_server_path(text: str, service: Service) -> None:
    storage = str(Path(service.env["VAD_STORAGE_DIR"]))
    assert storage not in text and "/uploads/" not in text and not PATH_TOKEN.search(text), text


def test_a_damaged_upload_is_named_by_its_file_name(service: Service, videos: dict[str, Path]) -> None:
    from workers.video import available_backends

    job = service.wait(upload(service, videos["holiday"]))
    assert job["status"] == "finished", job
    result = httpx.get(f"{service.url}/v1/jobs/{job['id']}/result").json()
    warnings = result["video"]["warnings"]
    assert result["video"]["filename"] == "holiday.mp4" and any("claims 100 frames" in w for w in warnings)
    fallbacks = [w for w in warnings if " failed, decoded with " in w]
    if available_backends()[0] != "pyav":  # the random-access backends give up on the cut file, PyAV takes over
        assert fallbacks, warnings
    for warning in warnings:
        assert_no_server_path(warning, service)
        assert "'video'" not in warning
    for fallback in fallbacks:  # it says why the first backend gave up, naming the upload
        assert "'holiday.mp4'" in fallback, fallback


def test_a_failed_upload_is_named_by_its_file_name(service: Service, videos: dict[str, Path]) -> None:
    job = service.wait(upload(service, videos["broken"]))
    assert job["status"] == "failed" and job["error"].startswith("cannot use 'broken.mp4' as a video: "), job
    assert_no_server_path(job["error"], service)
    answer = httpx.get(f"{service.url}/v1/jobs/{job['id']}/result")
    assert answer.status_code == 409 and job["error"] in answer.json()["detail"]
    assert_no_server_path(answer.json()["detail"], service)
