"""Shared storage infrastructure: where uploads live (a local directory or an S3-compatible bucket, behind one
interface), the workers' scratch space, and the one checked byte stream every stored or fetched video goes through.

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

Modules: :mod:`~vad.storage.base` (the interface), :mod:`~vad.storage.local`, :mod:`~vad.storage.s3`,
:mod:`~vad.storage.scratch` (scratch space and its sweep), :mod:`~vad.storage.checked` (size cap, SHA-256 and
container sniff as bytes pass), :mod:`~vad.storage.sniff` (the container from the first bytes),
:mod:`~vad.storage.evidence` (events' evidence stored by key: its deletion and retention sweep). It imports the
contract (:mod:`vad`) and boto3 only; never torch, :mod:`model`, :mod:`workers`, :mod:`service` or :mod:`vad.cli`.
"""

from __future__ import annotations

from vad.settings import QueueSettings
from vad.storage.base import (
    OBJECT_NAME,
    PARTIAL_NAME,
    READ_CHUNK,
    SCRATCH_DIR,
    UNCLAIMED_S,
    ListedObject,
    ListedUpload,
    ObjectWriter,
    Storage,
)
from vad.storage.checked import CheckedStream, copy_checked
from vad.storage.local import LocalStorage, LocalWriter
from vad.storage.s3 import S3Storage, S3Writer, make_s3_client, s3_errors, split_s3_url
from vad.storage.scratch import Scratch

__all__ = [
    "EVIDENCE_DIR",
    "OBJECT_NAME",
    "PARTIAL_NAME",
    "READ_CHUNK",
    "SCRATCH_DIR",
    "UNCLAIMED_S",
    "CheckedStream",
    "ListedObject",
    "ListedUpload",
    "LocalStorage",
    "LocalWriter",
    "ObjectWriter",
    "S3Storage",
    "S3Writer",
    "Scratch",
    "Storage",
    "copy_checked",
    "make_s3_client",
    "open_storage",
    "s3_errors",
    "split_s3_url",
]


def open_storage(settings: QueueSettings) -> Storage:
    """The storage ``settings`` describe: S3 when ``storage_url`` is set, else the local ``storage_dir``."""
    if settings.storage_url:
        return S3Storage.from_settings(settings)
    return LocalStorage(settings.storage_dir)
