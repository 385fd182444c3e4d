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
MAX_FEATURE_BYTES = 64 << 20
"""A saved feature object is at most this big (an hour of snippets at 512 floats is 16 MB)."""


class FeatureStore:
    """``put``/``get``/``delete``/``names`` of feature objects in the storage of uploads."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        if not isinstance(storage, (LocalStorage, S3Storage)):
            raise StorageError(f"saved features need a local or S3 storage, not {type(storage).__name__}")

    def _path(self, name: str) -> Path:
        assert isinstance(self.storage, LocalStorage)
        return self.storage.root / FEATURES_DIR / f"{name}{SUFFIX}"

    def _key(self, name: str) -> str:
        assert isinstance(self.storage, S3Storage)
        prefix = f"{self.storage.prefix}/" if self.storage.prefix else ""
        return f"{prefix}{FEATURES_DIR}/{name}{SUFFIX}"

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` as the features ``name`` (a job or event id), replacing what was there."""
        if isinstance(self.storage, LocalStorage):
            path = self._path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")
            partial.write_bytes(data)
            partial.replace(path)  # a reader never sees half an array
            return
        with self.storage.errors("save features"):
            self.storage.client.put_object(Bucket=self.storage.bucket, Key=self._key(name), Body=data)

    def get(self, name: str) -> bytes | None:
        """The bytes of the features ``name``, or ``None`` when there are none."""
        if isinstance(self.storage, LocalStorage):
            path = self._path(name)
            return path.read_bytes() if path.is_file() else None
        from botocore.exceptions import ClientError

        try:
            answer = self.storage.client.get_object(Bucket=self.storage.bucket, Key=self._key(name))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise StorageError(f"cannot read features {name}: {exc}") from exc
        with answer["Body"] as body:
            return bytes(body.read(MAX_FEATURE_BYTES + 1)[:MAX_FEATURE_BYTES])

    def delete(self, name: str) -> None:
        if isinstance(self.storage, LocalStorage):
            self._path(name).unlink(missing_ok=True)
            return
        with self.storage.errors("delete features"):
            self.storage.client.delete_object(Bucket=self.storage.bucket, Key=self._key(name))

    def names(self) -> Iterator[tuple[str, float]]:
        """``(name, last modified)`` of every stored feature object."""
        if isinstance(self.storage, LocalStorage):
            folder = self.storage.root / FEATURES_DIR
            if folder.is_dir():
                for path in folder.glob(f"*{SUFFIX}"):
                    yield path.name.removesuffix(SUFFIX), path.stat().st_mtime
            return
        prefix = self._key("").removesuffix(SUFFIX)
        with self.storage.errors("list features"):
            pages = self.storage.client.get_paginator("list_objects_v2").paginate(Bucket=self.storage.bucket,
                                                                                  Prefix=prefix)
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
