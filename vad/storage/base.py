"""The storage interface: what a backend (:mod:`vad.storage.local`, :mod:`vad.storage.s3`) provides, and the names
and ages both use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

OBJECT_NAME = "video"
PARTIAL_NAME = "upload.partial"
SCRATCH_DIR = ".scratch"
"""Beside the jobs' folders in ``storage_dir``: what workers fetched, one file per running job."""
UNCLAIMED_S = 3600
"""An upload without a job record this old is abandoned (a crashed API, a record deleted first): the sweep removes
it, and aborts a multipart upload left open this long."""
READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ListedObject:
    """One object stored by key (evidence): its key relative to the storage's root or prefix, size, modified."""

    key: str
    size: int
    modified: float


@dataclass(frozen=True)
class ListedUpload:
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

    def uploads(self) -> Iterator[ListedUpload]: ...

    def abort_stale(self, older_than_s: float) -> int:
        """Remove unfinished uploads older than ``older_than_s``; how many."""
        ...

    def check(self) -> None:
        """Raise :class:`StorageUnavailable` unless an upload could be written now."""
        ...

    def sweep_scratch(self) -> int:
        """Remove scratch files of worker processes that are gone; how many."""
        ...

    # objects by key (evidence): keys are relative, ``/``-separated, made by :mod:`vad.evidence`

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store the file at ``path`` as ``key`` (replacing it)."""
        ...

    def get_bytes(self, key: str, max_bytes: int) -> bytes | None:
        """A small object's bytes (at most ``max_bytes``), ``None`` when it does not exist."""
        ...

    def object_size(self, key: str) -> int | None:
        """The object's size in bytes, ``None`` when it does not exist."""
        ...

    def read_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start..end`` (inclusive) of an object, in chunks of at most :data:`READ_CHUNK`."""
        ...

    def list_objects(self, prefix: str) -> Iterator[ListedObject]:
        """The objects whose key starts with ``prefix``."""
        ...

    def delete_objects(self, keys: list[str]) -> None:
        """Delete these objects (missing ones are no error)."""
        ...
