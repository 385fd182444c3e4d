"""Uploads as objects of an S3-compatible bucket, reached with boto3 (imported only when it is used)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from vad.exceptions import StorageError, StorageUnavailable
from vad.settings import QueueSettings
from vad.storage.base import OBJECT_NAME, READ_CHUNK, SCRATCH_DIR, ListedObject, ListedUpload
from vad.storage.checked import copy_checked
from vad.storage.scratch import Scratch


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

    def uploads(self) -> Iterator[ListedUpload]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        with self.errors("list the uploads"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    job_id = self._job_of(item["Key"])
                    if job_id is not None:
                        yield ListedUpload(job_id, _timestamp(item["LastModified"]))

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

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        # small objects (a clip is a few MB): one PUT, no multipart upload
        with self.errors("store an object"), open(path, "rb") as body:
            self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=body,
                                   ContentType=content_type)

    def get_bytes(self, key: str, max_bytes: int) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            with self.errors("read an object"):
                answer = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key),
                                                Range=f"bytes=0-{max_bytes - 1}")
        except StorageError as exc:
            if isinstance(exc.__cause__, ClientError) and _error_code(exc.__cause__)[0] in ("NoSuchKey", "404"):
                return None
            raise
        with self.errors("read an object"):
            try:
                return bytes(answer["Body"].read())
            finally:
                answer["Body"].close()

    def object_size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            with self.errors("look up an object"):
                answer = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except StorageError as exc:
            if isinstance(exc.__cause__, ClientError) and _error_code(exc.__cause__)[0] in ("NoSuchKey", "404",
                                                                                             "NotFound"):
                return None
            raise
        return int(answer.get("ContentLength") or 0)

    def read_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        with self.errors("read an object"):  # a ranged GET, streamed: nothing beyond a chunk is held
            answer = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key), Range=f"bytes={start}-{end}")
        body = answer["Body"]
        try:
            with self.errors("read an object"):
                yield from body.iter_chunks(READ_CHUNK)
        finally:
            body.close()

    def list_objects(self, prefix: str) -> Iterator[ListedObject]:
        skip = len(self.prefix) + 1 if self.prefix else 0
        with self.errors("list objects"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=self.object_key(prefix))
            for page in pages:
                for item in page.get("Contents", []):
                    yield ListedObject(item["Key"][skip:], int(item.get("Size") or 0),
                                       _timestamp(item["LastModified"]))

    def delete_objects(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1000 keys at most
            batch = [{"Key": self.object_key(key)} for key in keys[start:start + 1000]]
            with self.errors("delete objects"):
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})


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
