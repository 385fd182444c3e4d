"""Saved CLIP features for reviewed events, beside the uploads in the same storage (local or S3).

Objects are ``.features/<name>.npy`` (``[T, D]`` float32, ``numpy.save`` bytes): ``<job id>.npy`` holds a job's
snippet features (written when its analysis ends), ``<event id>.npy`` a stream event's snippets and the context
around them (written when it closes), ``<stream id>.normal<k>.npy`` one of a stream's bounded normal windows (the
last snippets before a quiet moment, at most ``VAD_STREAM_NORMAL_WINDOWS`` per stream, overwritten in turn; for
``vad adapt``). ``vad export-reviews`` reads them; nothing here needs numpy. They are objects
by key of the storage (:meth:`~vad.storage.base.Storage.put_file` and the rest, as the evidence is); the folder's
leading dot keeps them out of the upload listing (:meth:`~vad.storage.base.Storage.uploads`), like the scratch
space. :func:`sweep_features` removes the objects whose job record or event record is gone (deleted or expired).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from vad.storage.base import Storage

FEATURES_DIR = ".features"
SUFFIX = ".npy"
CONTENT_TYPE = "application/octet-stream"


NORMAL_INFIX = ".normal"


def normal_window_name(stream_id: str, slot: int) -> str:
    """The features name of a stream's normal window in ``slot`` (0 … kept − 1)."""
    return f"{stream_id}{NORMAL_INFIX}{slot}"


def normal_window_stream(name: str) -> str | None:
    """The stream a normal window's name belongs to; ``None`` for a job's or an event's features."""
    stream_id, infix, slot = name.partition(NORMAL_INFIX)
    return stream_id if infix and slot.isdigit() else None


def features_key(name: str) -> str:
    """The storage key of the features ``name`` (a job or event id)."""
    return f"{FEATURES_DIR}/{name}{SUFFIX}"


class FeatureStore:
    """``put``/``get``/``delete``/``names`` of feature objects in the storage of uploads (local or S3)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` as the features ``name`` (a job or event id), replacing what was there (whole: a reader
        never sees half an array)."""
        with tempfile.TemporaryDirectory(prefix="vad-features-") as folder:
            path = Path(folder) / f"{name}{SUFFIX}"
            path.write_bytes(data)
            self.storage.put_file(features_key(name), path, CONTENT_TYPE)

    def get(self, name: str) -> bytes | None:
        """The bytes of the features ``name`` (all of them: an hour of 30 fps video is 14 MB), or ``None`` when there
        are none."""
        size = self.storage.object_size(features_key(name))
        if size is None:
            return None
        return self.storage.get_bytes(features_key(name), max(size, 1))

    def delete(self, name: str) -> None:
        """Delete the features ``name``; missing ones are no error."""
        self.storage.delete_objects([features_key(name)])

    def names(self) -> Iterator[tuple[str, float]]:
        """``(name, last modified)`` of every stored feature object."""
        prefix = f"{FEATURES_DIR}/"
        for listed in self.storage.list_objects(prefix):
            name = listed.key[len(prefix):]
            if name.endswith(SUFFIX) and "/" not in name:
                yield name.removesuffix(SUFFIX), listed.modified


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
