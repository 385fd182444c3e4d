"""Uploads in a local directory shared by the API and the workers (the default backend)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from vad.exceptions import StorageError, StorageUnavailable
from vad.storage.base import OBJECT_NAME, PARTIAL_NAME, READ_CHUNK, SCRATCH_DIR, ListedUpload
from vad.storage.scratch import Scratch


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

    def uploads(self) -> Iterator[ListedUpload]:
        if not self.root.is_dir():
            return
        for directory in self.root.iterdir():
            if directory.name.startswith(".") or not directory.is_dir():
                continue
            complete = (directory / OBJECT_NAME).exists()
            yield ListedUpload(directory.name, directory.stat().st_mtime, complete)

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
