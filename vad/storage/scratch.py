"""A worker host's scratch space for fetched videos, and its sweep (files of processes that are gone)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vad.exceptions import StorageUnavailable


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
