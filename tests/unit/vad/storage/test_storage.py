"""The storage interface without a server: the local directory, scratch space, the S3 writer's bookkeeping (a fake
client), and an upload's memory bounded by the part size. tests/integration/test_storage_s3.py runs the S3 backend
against a real SeaweedFS."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from service.exceptions import UploadStorageUnavailable, UploadTooLarge
from service.upload import receive_upload
from vad.exceptions import StorageError, StorageUnavailable
from vad.settings import QueueSettings
from vad.storage import LocalStorage, S3Storage, Scratch, copy_checked, open_storage

BOUNDARY = b"unit-boundary"
MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


async def upload_body(size: int, chunk: int = 64 * 1024, fail_after: int | None = None) -> AsyncIterator[bytes]:
    """A multipart body with one ``size``-byte MP4-looking file; raises ``ConnectionResetError`` (a client gone)
    after ``fail_after`` bytes of it."""
    yield b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n' + MP4_HEAD
    block, sent = os.urandom(chunk), len(MP4_HEAD)
    while sent < size:
        if fail_after is not None and sent >= fail_after:
            raise ConnectionResetError("the client went away")
        piece = block[: min(chunk, size - sent)]
        sent += len(piece)
        yield piece
    yield b"\r\n--" + BOUNDARY + b"--\r\n"


class FakeS3:
    """Records the multipart calls an S3Writer makes; can fail one operation."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[str] = []
        self.part_sizes: list[int] = []
        self.fail = fail
        self.open: set[str] = set()

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail:
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    def create_multipart_upload(self, **kw: Any) -> dict:
        self._call("create")
        self.open.add("u1")
        return {"UploadId": "u1"}

    def upload_part(self, **kw: Any) -> dict:
        self._call("part")
        self.part_sizes.append(len(kw["Body"]))
        return {"ETag": f"e{kw['PartNumber']}"}

    def complete_multipart_upload(self, **kw: Any) -> None:
        self._call("complete")
        self.open.discard(kw["UploadId"])

    def abort_multipart_upload(self, **kw: Any) -> None:
        self._call("abort")
        self.open.discard(kw["UploadId"])

    def delete_object(self, **kw: Any) -> None:
        self._call("delete")


def fake_storage(tmp_path: Path, client: FakeS3, part_size: int = 5 << 20) -> S3Storage:
    return S3Storage("s3://bucket/pre", tmp_path / "scratch", "http://127.0.0.1:1", part_size,
                     client_factory=lambda *a, **kw: client)


def test_local_writer_commits_and_aborts(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    writer = storage.writer("job1")
    writer.open()
    writer.write(b"abc")
    ref = writer.commit()
    assert Path(ref) == (tmp_path / "job1" / "video").resolve() and Path(ref).read_bytes() == b"abc"
    assert [u.job_id for u in storage.uploads()] == ["job1"]
    with storage.fetch(ref, 10) as path:
        assert path == Path(ref)  # read in place
    writer.abort()  # after a commit: the upload goes
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StorageError, match="no VAD_STORAGE_URL"), storage.fetch("s3://bucket/pre/job1/video", 10):
        pass


def test_local_uploads_skip_the_scratch_space(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    (tmp_path / ".scratch").mkdir()
    (tmp_path / "job2").mkdir()
    assert [u.job_id for u in storage.uploads()] == ["job2"]


def test_local_check_fails_on_an_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(StorageUnavailable, match="not writable"):
        LocalStorage(blocker / "uploads").check()


def test_scratch_removes_its_file_and_the_files_of_dead_processes(tmp_path: Path) -> None:
    scratch = Scratch(tmp_path)
    with scratch.file("job1") as path:
        path.write_bytes(b"x")
        assert path.name == f"job1.{os.getpid()}"
    assert not path.exists()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f"job2.{dead.pid}").write_bytes(b"left by a killed worker")
    (tmp_path / f"job3.{os.getpid()}").write_bytes(b"in use")
    assert scratch.sweep() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"job3.{os.getpid()}"]
    with pytest.raises(StorageUnavailable, match="not enough scratch space"), scratch.file("huge", size=1 << 62):
        pass


def test_copy_checks_the_cap_and_the_sha256(tmp_path: Path) -> None:
    import io

    data = os.urandom(3000)
    assert copy_checked(io.BytesIO(data), tmp_path / "a", 3000, hashlib.sha256(data).hexdigest()) == \
        hashlib.sha256(data).hexdigest()
    with pytest.raises(StorageError, match="larger than the limit"):
        copy_checked(io.BytesIO(data), tmp_path / "b", 2999)
    with pytest.raises(StorageError, match="does not match its SHA-256"):
        copy_checked(io.BytesIO(data), tmp_path / "c", 3000, "0" * 64)


def test_s3_writer_aborts_what_it_began(tmp_path: Path) -> None:
    client = FakeS3()
    storage = fake_storage(tmp_path, client)
    writer = storage.writer("job1")
    writer.abort()  # nothing begun: nothing to do
    assert client.calls == []
    writer.open()
    writer.write(b"x" * 10)
    writer.abort()
    assert client.calls == ["create", "part", "abort"] and not client.open
    committed = storage.writer("job2")
    committed.open()
    committed.write(b"y")
    assert committed.commit() == "s3://bucket/pre/job2/video"
    committed.abort()  # after the commit: the object is deleted
    assert client.calls[-2:] == ["complete", "delete"]


def test_s3_errors_become_storage_unavailable(tmp_path: Path) -> None:
    writer = fake_storage(tmp_path, FakeS3(fail="create")).writer("job1")
    with pytest.raises(StorageUnavailable, match="does not answer"):
        writer.open()


@pytest.mark.parametrize(("fail_after", "max_bytes", "error"), [
    (6 << 20, 1 << 30, ConnectionResetError),  # the client disconnects after a part was stored
    (None, 7 << 20, UploadTooLarge),  # the cap, after a part was stored
])
def test_a_failed_upload_aborts_its_multipart_upload(tmp_path: Path, fail_after: int | None, max_bytes: int,
                                                     error: type) -> None:
    client = FakeS3()
    with pytest.raises(error):
        asyncio.run(receive_upload(upload_body(12 << 20, fail_after=fail_after), BOUNDARY,
                                   fake_storage(tmp_path, client).writer("job1"), max_bytes))
    assert client.calls[0] == "create" and "part" in client.calls and client.calls[-1] == "abort"
    assert not client.open


def test_a_dead_store_refuses_the_upload_on_its_first_bytes(tmp_path: Path) -> None:
    client = FakeS3(fail="create")
    read = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal read
        async for chunk in upload_body(50 << 20):
            read += len(chunk)
            yield chunk

    with pytest.raises(UploadStorageUnavailable, match="does not answer"):
        asyncio.run(receive_upload(counted(), BOUNDARY, fake_storage(tmp_path, client).writer("job1"), 1 << 30))
    assert read < 200_000  # the sniff window and a chunk, not the 50 MB


def test_memory_is_bounded_by_the_part_size(tmp_path: Path) -> None:
    client = FakeS3()
    part = 5 << 20
    tracemalloc.start()
    try:
        stored, _ = asyncio.run(receive_upload(upload_body(60 << 20), BOUNDARY,
                                               fake_storage(tmp_path, client, part).writer("j"), 1 << 30))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.size == 60 << 20 and client.calls[-1] == "complete"
    assert all(size <= part + 64 * 1024 + 4096 for size in client.part_sizes)
    assert sum(client.part_sizes) == 60 << 20 and min(client.part_sizes[:-1]) >= part
    assert peak < 2 * part, f"peak {peak} bytes for {part}-byte parts"


def test_storage_settings(tmp_path: Path) -> None:
    assert isinstance(open_storage(QueueSettings(storage_dir=tmp_path)), LocalStorage)
    s3 = open_storage(QueueSettings(storage_dir=tmp_path, storage_url="s3://my-bucket/a/b/",
                                    storage_endpoint_url="http://127.0.0.1:9"))
    assert isinstance(s3, S3Storage) and (s3.bucket, s3.prefix) == ("my-bucket", "a/b")
    assert s3.key("j") == "a/b/j/video" and s3.scratch.root == tmp_path / ".scratch"
    assert QueueSettings(storage_url="").storage_url is None
    for bad in ("http://bucket", "s3://B", "s3://a"):
        with pytest.raises(ValidationError, match="storage_url"):
            QueueSettings(storage_url=bad)
