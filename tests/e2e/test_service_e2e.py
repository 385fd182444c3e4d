"""The deployed service with real parts (see ``conftest.py``): Redis, `vad worker` as a subprocess, uvicorn
serving the API. A reduced-width model with a tiny random CLIP stands in for the real weights; the videos are
generated.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.e2e.conftest import Service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    from workers.synthetic import make_video

    root = tmp_path_factory.mktemp("videos")
    make_video(root / "short.mp4", duration_s=6, fps=25, size=(96, 64), seed=1)
    make_video(root / "long.mp4", duration_s=150, fps=30, size=(160, 120), seed=2)
    data = (root / "short.mp4").read_bytes()
    (root / "corrupt.mp4").write_bytes(data[:64] + os.urandom(20_000))  # an MP4 header, then garbage
    return {p.stem: p for p in root.iterdir()}


def test_upload_poll_and_result_equal_vad_analyze(service: Service, videos: dict[str, Path]) -> None:
    response = service.upload(videos["short"], threshold=0.3, frame_scores="true")
    assert response.status_code == 202, response.text
    job = service.wait(response.json()["id"])
    assert job["status"] == "finished" and job["attempts"] == 1 and job["progress"] == {"stage": "done",
                                                                                          "percent": 100.0}
    result = httpx.get(f"{service.url}/v1/jobs/{job['id']}/result").json()
    local = subprocess.run([sys.executable, "-m", "vad", "analyze", str(videos["short"]), "--bundle",
                            str(service.bundle), "--threshold", "0.3", "--frame-scores", "-q"],
                           env=service.env, capture_output=True, text=True, check=True)
    import json

    expected = json.loads(local.stdout)
    assert result["video"]["frames"] == expected["video"]["frames"] == 150
    assert result["video"]["sha256"] == expected["video"]["sha256"]
    np.testing.assert_allclose(result["timeline"]["score"], expected["timeline"]["score"], atol=1e-6)
    np.testing.assert_allclose(result["timeline"]["class_probs"], expected["timeline"]["class_probs"], atol=1e-6)
    assert len(result["frame_scores"]) == 150
    # each event has its own id (a UUID, unique per job: the evidence is kept under it); the rest is the same
    assert [{k: v for k, v in e.items() if k != "id"} for e in result["events"]] == \
        [{k: v for k, v in e.items() if k != "id"} for e in expected["events"]]
    assert len({e["id"] for e in result["events"] + expected["events"]}) == 2 * len(result["events"])
    assert result["model"]["bundle_sha256"] == expected["model"]["bundle_sha256"]


def test_same_upload_returns_the_first_job(service: Service, videos: dict[str, Path]) -> None:
    first = service.upload(videos["short"], threshold=0.45)
    second = service.upload(videos["short"], threshold=0.45)
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json()["id"] == first.json()["id"]
    service.wait(first.json()["id"])


def test_corrupt_upload_fails_with_a_reason_and_is_not_retried(service: Service, videos: dict[str, Path]) -> None:
    response = service.upload(videos["corrupt"])
    assert response.status_code == 202  # it looks like an MP4; only decoding can tell
    job = service.wait(response.json()["id"])
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"] and "Traceback" not in job["error"]
    result = httpx.get(f"{service.url}/v1/jobs/{job['id']}/result")
    assert result.status_code == 409 and job["error"] in result.json()["detail"]


def test_killed_worker_job_is_retried_and_finishes(service: Service, videos: dict[str, Path]) -> None:
    job_id = service.upload(videos["long"]).json()["id"]
    deadline = time.monotonic() + 120
    while httpx.get(f"{service.url}/v1/jobs/{job_id}").json()["status"] != "started":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.02)
    pids = service.worker_pids()
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)  # the worker process, not the supervisor
    job = service.wait(job_id, timeout_s=180)
    assert job["status"] == "finished", job
    assert job["attempts"] == 2
    assert service.worker_pids() and service.worker_pids()[0] != pids[0]  # the supervisor replaced it
    assert service.worker.poll() is None


def test_delete_removes_the_job_and_its_upload(service: Service, videos: dict[str, Path]) -> None:
    job_id = service.upload(videos["short"], threshold=0.2).json()["id"]
    service.wait(job_id)
    assert httpx.delete(f"{service.url}/v1/jobs/{job_id}").status_code == 204
    assert httpx.get(f"{service.url}/v1/jobs/{job_id}").status_code == 404
    assert not (Path(service.env["VAD_STORAGE_DIR"]) / job_id).exists()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(service: Service) -> Samples:
    """Every sample of ``/metrics``, by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{service.url}/metrics", timeout=10).text
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_count_the_jobs_and_requests_of_this_test(service: Service, tmp_path: Path) -> None:
    """Counters read before and after real jobs move by exactly what this test did (the stack is shared, so
    deltas, not absolute values)."""
    from workers.synthetic import make_video

    video = make_video(tmp_path / "metrics.mp4", duration_s=2, fps=25, size=(96, 64), seed=11).path
    corrupt = tmp_path / "metrics-corrupt.mp4"
    corrupt.write_bytes(video.read_bytes()[:64] + os.urandom(20_000))  # an MP4 header, then garbage
    before = _scrape(service)
    scrapes = 1

    good = service.upload(video, threshold=0.35)
    duplicate = service.upload(video, threshold=0.35)
    bad = service.upload(corrupt)
    assert (good.status_code, duplicate.status_code, bad.status_code) == (202, 200, 202)
    assert service.wait(good.json()["id"])["status"] == "finished"
    assert service.wait(bad.json()["id"])["status"] == "failed"
    result = httpx.get(f"{service.url}/v1/jobs/{good.json()['id']}/result", timeout=10)
    assert result.status_code == 200
    timings = {name.removesuffix("_s"): seconds for name, seconds in result.json()["timings"].items()}

    def delta(after: Samples, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    # the worker counts a job just after its record says it ended: wait for both counts (at most ~30 s)
    for _ in range(300):
        after = _scrape(service)
        scrapes += 1
        ended = (delta(after, "vad_jobs_total", outcome="finished"), delta(after, "vad_jobs_total", outcome="failed"))
        if min(ended) > 0:
            break
        time.sleep(0.1)

    assert ended == (1.0, 1.0)
    assert delta(after, "vad_http_requests_total", method="POST", route="/v1/videos", status="202") == 2
    assert delta(after, "vad_http_requests_total", method="POST", route="/v1/videos", status="200") == 1  # the dup
    assert delta(after, "vad_http_requests_total", method="GET", route="/v1/jobs/{job_id}/result", status="200") == 1
    # a scrape is counted once it has answered: every scrape but the last one
    assert delta(after, "vad_http_requests_total", method="GET", route="/metrics", status="200") == scrapes - 1
    assert after[("vad_queue_depth", frozenset())] == 0
    # only the finished job went through the stages, and each stage's seconds are that job's timings
    assert set(timings) >= {"decode", "encode", "model", "total"}
    for stage, seconds in timings.items():
        assert delta(after, "vad_stage_runs_total", stage=stage) == 1, stage
        assert delta(after, "vad_stage_seconds_total", stage=stage) == pytest.approx(seconds, abs=1e-6), stage
