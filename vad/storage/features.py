"""Saved CLIP features for reviewed events, beside the uploads in the same storage (local or S3).

Objects are ``.features/<name>.npy`` (``[T, D]`` float32, ``numpy.save`` bytes): ``<job id>.npy`` holds a job's
snippet features (written when its analysis ends), ``<event id>.npy`` a stream event's snippets and the context
around them (written when it closes). ``vad export-reviews`` reads them; nothing here needs numpy. The folder's
leading dot keeps it out of the upload listing (:meth:`~vad.storage.base.Storage.uploads`), like the scratch space;
:func:`sweep_features` removes the objects whose job record or event record is gone (deleted or expired).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from vad.exceptions import StorageError
from vad.storage.base import Storage
from vad.storage.local import LocalStorage
from vad.storage.s3 import S3Storage

FEATURES_DIR = ".features"
SUFFIX = ".npy"


class FeatureStore:
    """``put``/``get``/``delete``/``names`` of feature objects in the storage of uploads (local or S3)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def _local(self) -> Path | None:
        """The local folder of the features, or ``None`` for S3."""
        if isinstance(self.storage, LocalStorage):
            return self.storage.root / FEATURES_DIR
        if isinstance(self.storage, S3Storage):
            return None
        raise StorageError(f"saved features need a local or S3 storage, not {type(self.storage).__name__}")

    def _s3(self) -> S3Storage:
        assert isinstance(self.storage, S3Storage)
        return self.storage

    def _key(self, name: str) -> str:
        prefix = f"{self._s3().prefix}/" if self._s3().prefix else ""
        return f"{prefix}{FEATURES_DIR}/{name}{SUFFIX}"

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` as the features ``name`` (a job or event id), replacing what was there."""
        folder = self._local()
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            partial = folder / f"{name}.partial"
            partial.write_bytes(data)
            partial.replace(folder / f"{name}{SUFFIX}")  # a reader never sees half an array
            return
        s3 = self._s3()
        with s3.errors("save features"):
            s3.client.put_object(Bucket=s3.bucket, Key=self._key(name), Body=data)

    def get(self, name: str) -> bytes | None:
        """The bytes of the features ``name``, or ``None`` when there are none."""
        folder = self._local()
        if folder is not None:
            path = folder / f"{name}{SUFFIX}"
            return path.read_bytes() if path.is_file() else None
        from botocore.exceptions import ClientError

        s3 = self._s3()
        try:
            with s3.errors("read features"):
                answer = s3.client.get_object(Bucket=s3.bucket, Key=self._key(name))
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        body = answer["Body"]
        try:
            return bytes(body.read())  # an hour of 30 fps video is 14 MB of features
        finally:
            body.close()

    def delete(self, name: str) -> None:
        folder = self._local()
        if folder is not None:
            (folder / f"{name}{SUFFIX}").unlink(missing_ok=True)
            return
        s3 = self._s3()
        with s3.errors("delete features"):
            s3.client.delete_object(Bucket=s3.bucket, Key=self._key(name))

    def names(self) -> Iterator[tuple[str, float]]:
        """``(name, last modified)`` of every stored feature object."""
        folder = self._local()
        if folder is not None:
            if folder.is_dir():
                for path in folder.glob(f"*{SUFFIX}"):
                    yield path.name.removesuffix(SUFFIX), path.stat().st_mtime
            return
        s3, prefix = self._s3(), self._key("").removesuffix(SUFFIX)
        with s3.errors("list features"):
            pages = s3.client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    name = item["Key"][len(prefix):]
                    if name.endswith(SUFFIX):
                        yield name.removesuffix(SUFFIX), item["LastModified"].timestamp()


def sweep_features(store: FeatureStore, alive: Callable[[str], bool], grace_s: float = 3600.0) -> int:
    """Delete feature objects older than ``grace_s`` whose owner (job or event, ``alive(name)``) is gone; how many.

    The grace covers the moment between saving a stream event's features and its close being recorded.
    """
    now, removed = time.time(), 0
    for name, modified in list(store.names()):
        if now - modified >= grace_s and not alive(name):
            store.delete(name)
            removed += 1
    return removed
