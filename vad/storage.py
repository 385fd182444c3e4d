"""Where uploads live: a local directory or an S3-compatible bucket, behind one interface (torch-free).

The API writes an upload through :meth:`Storage.writer` as it arrives: a local file, or a multipart upload of
``part_size`` parts, so the API holds about one part per upload in memory. Every failure aborts the write: the
partial file goes, the multipart upload is aborted, so neither half an object nor a dangling upload remains. The
job record keeps the object's reference (:meth:`ObjectWriter.commit`); a worker reads it through
:meth:`Storage.fetch`, which streams an object down to the worker's own scratch space and removes it afterwards
(a local upload is read in place). The supervisor's sweep lists what is stored (:meth:`Storage.uploads`) and
deletes what retention no longer keeps.

The object store is reached with boto3 (imported only when ``VAD_STORAGE_URL`` is set), its endpoint from
``VAD_STORAGE_ENDPOINT_URL``, region and credentials from the standard ``AWS_*`` variables. Its failures surface as
:class:`~vad.exceptions.StorageUnavailable` (transient: 503, retried) or :class:`~vad.exceptions.StorageError`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from vad.exceptions import StorageError, StorageUnavailable
from vad.settings import QueueSettings

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

OBJECT_NAME = "video"
PARTIAL_NAME = "upload.partial"
SCRATCH_DIR = ".scratch"
"""Beside the jobs' folders in ``storage_dir``: what workers fetched, one file per running job."""
UNCLAIMED_S = 3600
"""An upload without a job record this old is abandoned (a crashed API, a record deleted first): the sweep removes
it, and aborts a multipart upload left open this long."""
READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredUpload:
    """One job's upload as the sweep sees it: complete or not, and when it was last written (Unix seconds)."""

    job_id: str
    modified: float
    complete: bool = True


class ObjectWriter(Protocol):
    """Writes one upload: :meth:`open` once, :meth:`write` chunks of at least :attr:`part_size` bytes (the last
    one smaller), :meth:`commit`; :meth:`abort` at any point (after a commit too) removes every trace of it.
    Each call may block on I/O: the API runs them in a thread."""

    part_size: int

    def open(self) -> None: ...

    def write(self, data: bytes | bytearray) -> None: ...

    def commit(self) -> str:
        """Finish the object; returns its reference for the job record."""
        ...

    def abort(self) -> None: ...


class Storage(Protocol):
    """The upload storage shared by the API and the workers."""

    description: str
    """Where uploads go, for logs and messages (never a credential)."""

    def writer(self, job_id: str) -> ObjectWriter: ...

    def fetch(self, ref: str, max_bytes: int, sha256: str = "") -> AbstractContextManager[Path]:
        """A local path of the object ``ref`` while the context lasts (a scratch copy, removed after)."""
        ...

    def delete(self, job_id: str) -> None: ...

    def uploads(self) -> Iterator[StoredUpload]: ...

    def abort_stale(self, older_than_s: float) -> int:
        """Remove unfinished uploads older than ``older_than_s``; how many."""
        ...

    def check(self) -> None:
        """Raise :class:`StorageUnavailable` unless an upload could be written now."""
        ...

    def sweep_scratch(self) -> int:
        """Remove scratch files of worker processes that are gone; how many."""
        ...


def open_storage(settings: QueueSettings) -> Storage:
    """The storage ``settings`` describe: S3 when ``storage_url`` is set, else the local ``storage_dir``."""
    if settings.storage_url:
        return S3Storage.from_settings(settings)
    return LocalStorage(settings.storage_dir)


# --- scratch space ----------------------------------------------------------------------------------------------


class Scratch:
    """A worker host's own space for fetched videos: one file per running job, named ``<job>.<pid>`` so that the
    files of a killed process can be told from those in use."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextmanager
    def file(self, name: str, size: int | None = None) -> Iterator[Path]:
        """A path to write a fetched video to, removed when the context ends; refuses when ``size`` bytes would not
        fit in the free space."""
        self.root.mkdir(parents=True, exist_ok=True)
        if size is not None:
            free = shutil.disk_usage(self.root).free
            if size > free:
                raise StorageUnavailable(f"not enough scratch space for a {size}-byte video ({free} bytes free in "
                                         f"{self.root}); the job is retried")
        path = self.root / f"{name}.{os.getpid()}"
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def sweep(self) -> int:
        """Remove the files of processes that no longer run."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for path in self.root.iterdir():
            pid = path.suffix.lstrip(".")
            if pid.isdigit() and not _alive(int(pid)):
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def copy_checked(source: BinaryIO, dest: Path, max_bytes: int, sha256: str = "", what: str = "the upload") -> str:
    """Copy ``source`` to ``dest`` in chunks, at most ``max_bytes``; the SHA-256 of what was copied, which must equal
    ``sha256`` when given."""
    digest, size = hashlib.sha256(), 0
    with open(dest, "wb") as out:
        while chunk := source.read(READ_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise StorageError(f"{what} is larger than the limit of {max_bytes} bytes")
            digest.update(chunk)
            out.write(chunk)
    if sha256 and digest.hexdigest() != sha256:
        raise StorageError(f"{what} read back does not match its SHA-256 (stored {size} bytes); upload it again")
    return digest.hexdigest()


# --- local directory --------------------------------------------------------------------------------------------


class LocalWriter:
    """Writes ``<root>/<job>/upload.partial`` and renames it to ``video`` on commit."""

    part_size = READ_CHUNK

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.partial = directory / PARTIAL_NAME
        self.file: BinaryIO | None = None

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.file = open(self.partial, "wb")  # noqa: SIM115 - closed in commit / abort

    def write(self, data: bytes | bytearray) -> None:
        assert self.file is not None, "open() first"
        self.file.write(data)

    def commit(self) -> str:
        assert self.file is not None, "open() first"
        self.file.close()
        self.file = None
        final = self.directory / OBJECT_NAME
        self.partial.replace(final)
        return str(final.resolve())

    def abort(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        for path in (self.partial, self.directory / OBJECT_NAME):
            path.unlink(missing_ok=True)
        with suppress(OSError):  # a folder this writer did not create, or one holding more, stays
            self.directory.rmdir()


class LocalStorage:
    """Uploads in ``<root>/<job id>/video``, shared with the workers by a common file system; references are
    absolute paths, read in place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.scratch = Scratch(root / SCRATCH_DIR)
        self.description = f"the directory {root}"

    def writer(self, job_id: str) -> LocalWriter:
        return LocalWriter(self.root / job_id)

    @contextmanager
    def fetch(self, ref: str, max_bytes: int, sha256: str = "") -> Iterator[Path]:
        if ref.startswith("s3://"):
            raise StorageError("this upload is in object storage, but this worker has no VAD_STORAGE_URL: give the "
                               "workers the API's storage settings")
        yield Path(ref)

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self.root / job_id, ignore_errors=True)

    def uploads(self) -> Iterator[StoredUpload]:
        if not self.root.is_dir():
            return
        for directory in self.root.iterdir():
            if directory.name.startswith(".") or not directory.is_dir():
                continue
            complete = (directory / OBJECT_NAME).exists()
            yield StoredUpload(directory.name, directory.stat().st_mtime, complete)

    def abort_stale(self, older_than_s: float) -> int:
        return 0  # an unfinished upload is a folder without a record, which the sweep removes after UNCLAIMED_S

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root):
                pass
        except OSError as exc:
            raise StorageUnavailable(f"the upload directory {self.root} is not writable: {exc}") from exc

    def sweep_scratch(self) -> int:
        return self.scratch.sweep()


# --- S3-compatible object storage -------------------------------------------------------------------------------


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` → ``("bucket", "some/key")``."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def _error_code(exc: BaseException) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


@contextmanager
def s3_errors(what: str, endpoint: str) -> Iterator[None]:
    """Translate botocore's errors into ours: unreachable, timeouts, 5xx and throttling are
    :class:`StorageUnavailable`; a missing object, refused credentials and other 4xx are :class:`StorageError`."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

    try:
        yield
    except ClientError as exc:
        code, status = _error_code(exc)
        if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "RequestTimeout", "InternalError"):
            raise StorageUnavailable(f"the object store at {endpoint} failed to {what}: {code or status}") from exc
        if code == "NoSuchBucket" or (code in ("404", "NotFound") and "bucket" in what):
            raise StorageError(f"cannot {what}: the bucket does not exist at {endpoint}; create it (compose's "
                               "storage-init does)") from exc
        if code in ("NoSuchKey", "404", "NotFound"):
            raise StorageError(f"cannot {what}: the object does not exist (deleted, or expired by retention)") from exc
        raise StorageError(f"the object store at {endpoint} refused to {what}: {code or status} "
                           f"({exc.response.get('Error', {}).get('Message', '')})") from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise StorageError(f"no credentials for the object store at {endpoint}: set AWS_ACCESS_KEY_ID and "
                           "AWS_SECRET_ACCESS_KEY") from exc
    except BotoCoreError as exc:  # connection refused, DNS, timeouts, a connection closed mid-answer
        raise StorageUnavailable(f"the object store at {endpoint} does not answer ({what}): {exc}") from exc


class S3Writer:
    """A multipart upload, begun in :meth:`open` (so a dead store refuses the upload on its first bytes), one part
    per :meth:`write`, completed by :meth:`commit`; :meth:`abort` aborts it, or deletes the object once complete."""

    def __init__(self, storage: S3Storage, key: str) -> None:
        self.storage, self.key = storage, key
        self.part_size = storage.part_size
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.committed = False

    def open(self) -> None:
        with self.storage.errors("begin the upload"):
            answer = self.storage.client.create_multipart_upload(Bucket=self.storage.bucket, Key=self.key)
        self.upload_id = answer["UploadId"]

    def write(self, data: bytes | bytearray) -> None:
        number = len(self.parts) + 1
        with self.storage.errors(f"store part {number} of the upload"):
            answer = self.storage.client.upload_part(Bucket=self.storage.bucket, Key=self.key,
                                                     UploadId=self.upload_id, PartNumber=number, Body=data)
        self.parts.append({"ETag": answer["ETag"], "PartNumber": number})

    def commit(self) -> str:
        with self.storage.errors("complete the upload"):
            self.storage.client.complete_multipart_upload(Bucket=self.storage.bucket, Key=self.key,
                                                          UploadId=self.upload_id,
                                                          MultipartUpload={"Parts": self.parts})
        self.committed = True
        return f"s3://{self.storage.bucket}/{self.key}"

    def abort(self) -> None:
        if self.committed:
            with self.storage.errors("delete the upload"):
                self.storage.client.delete_object(Bucket=self.storage.bucket, Key=self.key)
        elif self.upload_id is not None:
            with self.storage.errors("abort the upload"):
                self.storage.client.abort_multipart_upload(Bucket=self.storage.bucket, Key=self.key,
                                                           UploadId=self.upload_id)
        self.upload_id, self.committed = None, False


class S3Storage:
    """Uploads as objects ``<prefix>/<job id>/video`` of one bucket; workers fetch them to their scratch space.

    Args:
        url: ``s3://bucket/prefix``.
        scratch: The worker's local directory for fetched objects.
        endpoint_url: The store's URL (path-style addressing is used with it); ``None``: boto3's own resolution
            (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, else AWS).
        part_size: Bytes per part of a multipart upload (at least 5 MiB).
        timeout_s: Connect and read timeout of one request.
        retries: Retries of a request after a connection error, a timeout, throttling or a 5xx answer.
        client_factory: Builds the boto3 client (tests); default ``boto3.client``.
    """

    def __init__(self, url: str, scratch: Path, endpoint_url: str | None = None, part_size: int = 8 << 20,
                 timeout_s: float = 10.0, retries: int = 2, client_factory: Callable[..., Any] | None = None) -> None:
        self.bucket, prefix = split_s3_url(url)
        self.prefix = prefix.strip("/")
        self.scratch = Scratch(scratch)
        self.endpoint_url, self.part_size = endpoint_url, part_size
        self.timeout_s, self.retries = timeout_s, retries
        self._factory = client_factory
        self._client: Any = None
        self.endpoint = endpoint_url or "AWS S3"
        self.description = f"s3://{self.bucket}/{self.prefix} at {self.endpoint}"

    @classmethod
    def from_settings(cls, settings: QueueSettings) -> S3Storage:
        assert settings.storage_url is not None
        return cls(settings.storage_url, settings.storage_dir / SCRATCH_DIR, settings.storage_endpoint_url,
                   settings.storage_part_mb << 20, settings.storage_timeout_s, settings.storage_retries)

    @property
    def client(self) -> Any:
        """The boto3 client, built on first use (boto3 is imported only here)."""
        if self._client is None:
            self._client = make_s3_client(self.endpoint_url, self.timeout_s, self.retries, self._factory)
        return self._client

    def errors(self, what: str) -> Any:
        return s3_errors(what, self.endpoint)

    def key(self, job_id: str) -> str:
        return f"{self.prefix}/{job_id}/{OBJECT_NAME}" if self.prefix else f"{job_id}/{OBJECT_NAME}"

    def writer(self, job_id: str) -> S3Writer:
        return S3Writer(self, self.key(job_id))

    @contextmanager
    def fetch(self, ref: str, max_bytes: int, sha256: str = "") -> Iterator[Path]:
        if not ref.startswith("s3://"):
            raise StorageError("this upload is in a local directory of the API's host, but this worker reads object "
                               "storage (VAD_STORAGE_URL): give the API and the workers the same storage settings")
        bucket, key = split_s3_url(ref)
        with self.fetch_object(bucket, key, max_bytes, sha256) as path:
            yield path

    @contextmanager
    def fetch_object(self, bucket: str, key: str, max_bytes: int, sha256: str = "",
                     what: str = "the upload") -> Iterator[Path]:
        """Stream ``s3://bucket/key`` to a scratch file (at most ``max_bytes``, checked against ``sha256`` when
        given), yield its path, remove it."""
        with self.errors(f"read {what}"):
            answer = self.client.get_object(Bucket=bucket, Key=key)
        body, size = answer["Body"], int(answer.get("ContentLength") or 0)
        try:
            if size > max_bytes:
                raise StorageError(f"{what} is {size} bytes, more than the limit of {max_bytes}")
            name = key.replace("/", "_")[-100:]
            with self.scratch.file(name, size) as path:
                with self.errors(f"read {what}"):
                    copy_checked(body, path, max_bytes, sha256, what)
                yield path
        finally:
            body.close()

    def delete(self, job_id: str) -> None:
        with self.errors("delete an upload"):
            self.client.delete_object(Bucket=self.bucket, Key=self.key(job_id))

    def _job_of(self, key: str) -> str | None:
        rest = key[len(self.prefix) + 1:] if self.prefix else key
        job_id, _, name = rest.partition("/")
        return job_id if job_id and name == OBJECT_NAME else None

    def uploads(self) -> Iterator[StoredUpload]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        with self.errors("list the uploads"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    job_id = self._job_of(item["Key"])
                    if job_id is not None:
                        yield StoredUpload(job_id, _timestamp(item["LastModified"]))

    def open_uploads(self) -> list[dict[str, Any]]:
        """The multipart uploads begun under the prefix and neither completed nor aborted."""
        prefix = f"{self.prefix}/" if self.prefix else ""
        with self.errors("list unfinished uploads"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix)
            return [upload for page in pages for upload in page.get("Uploads", [])]

    def abort_stale(self, older_than_s: float) -> int:
        now, aborted = time.time(), 0
        for upload in self.open_uploads():
            if now - _timestamp(upload["Initiated"]) >= older_than_s:
                with self.errors("abort an unfinished upload"):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                       UploadId=upload["UploadId"])
                aborted += 1
        return aborted

    def check(self) -> None:
        with self.errors("reach the bucket"):
            self.client.head_bucket(Bucket=self.bucket)

    def ensure_bucket(self) -> bool:
        """Create the bucket unless it exists (a deployment's first start); whether it was created."""
        from botocore.exceptions import ClientError

        try:
            self.check()
            return False
        except StorageError as exc:
            if isinstance(exc, StorageUnavailable) or not isinstance(exc.__cause__, ClientError):
                raise
        with self.errors("create the bucket"):
            self.client.create_bucket(Bucket=self.bucket)
        return True

    def sweep_scratch(self) -> int:
        return self.scratch.sweep()


def make_s3_client(endpoint_url: str | None, timeout_s: float, retries: int,
                   factory: Callable[..., Any] | None = None) -> Any:
    """A boto3 S3 client: bounded timeouts and retries, path-style addressing for a custom endpoint."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=timeout_s, read_timeout=timeout_s,
                    retries={"mode": "standard", "total_max_attempts": retries + 1},
                    s3={"addressing_style": "path"} if endpoint_url else None,
                    request_checksum_calculation="when_required", response_checksum_validation="when_required")
    return (factory or boto3.client)("s3", endpoint_url=endpoint_url, config=config)


def _timestamp(value: datetime | float) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)
