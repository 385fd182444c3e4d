"""Uploads in a local directory shared by the API and the workers (the default backend)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from vad.evidence import EVIDENCE_DIR
from vad.exceptions import StorageError, StorageUnavailable
from vad.storage.base import (
    OBJECT_NAME,
    PARTIAL_NAME,
    READ_CHUNK,
    SCRATCH_DIR,
    ListedObject,
    ListedUpload,
)
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
            if directory.name.startswith(".") or directory.name == EVIDENCE_DIR or not directory.is_dir():
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

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise StorageError(f"not a storage key: {key!r}")
        return self.root.joinpath(*parts)

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        shutil.copyfile(path, partial)
        partial.replace(target)  # readers never see half a file

    def get_bytes(self, key: str, max_bytes: int) -> bytes | None:
        try:
            with open(self._path(key), "rb") as file:
                return file.read(max_bytes)
        except FileNotFoundError:
            return None

    def object_size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def read_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        with open(self._path(key), "rb") as file:
            file.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = file.read(min(READ_CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    def list_objects(self, prefix: str) -> Iterator[ListedObject]:
        top = self._path(prefix.rstrip("/").split("/")[0])
        if not top.is_dir():
            return
        for path in sorted(top.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.endswith(".partial"):
                stat = path.stat()
                yield ListedObject(key, stat.st_size, stat.st_mtime)

    def delete_objects(self, keys: list[str]) -> None:
        folders = set()
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            folders.add(path.parent)
        for folder in folders:
            with suppress(OSError):  # emptied folders go; one still holding objects stays
                folder.rmdir()
