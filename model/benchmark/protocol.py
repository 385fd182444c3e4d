"""The VadCLIP feature layout both benchmarks use (spec A): one module for its constants, names and list files.

A feature file ``<video>__<crop>.npy`` holds ``[n, D]`` float32, one row per 16-frame snippet. A list CSV has
the header ``path,label`` and one row per feature file; its paths carry the authors' directory prefix (the
preset's ``list_prefix``, e.g. ``/data/VAD/UCFCrime/``), which :func:`resolve_feature_path` replaces by a
``features_root``. A training list has every crop of a video, a test list one crop per video. The workers write
this layout too (``vad extract``), so this module has no torch.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from model.config import DSANetConfig
from model.exceptions import DataError

SNIPPET_FRAMES = 16
"""Frames per snippet: one feature row (and one score) per 16 frames."""

LIST_HEADER = ("path", "label")
_FEATURE_FILE = re.compile(r"^(?P<video>.+)__(?P<crop>\d+)\.npy$")


def feature_stem(video: str, crop: int) -> str:
    """``<video>__<crop>``: the name of one crop (or view) of a video, without suffix."""
    return f"{video}__{crop}"


def feature_file_name(video: str, crop: int) -> str:
    """``<video>__<crop>.npy``: the feature file of one crop (or view) of a video."""
    return feature_stem(video, crop) + ".npy"


def parse_feature_file(name: str) -> tuple[str, int] | None:
    """``(video, crop)`` of a feature file name or path (either separator), ``None`` when it is not one."""
    match = _FEATURE_FILE.match(re.split(r"[\\/]", name)[-1])
    return (match["video"], int(match["crop"])) if match else None


@dataclass(frozen=True)
class FeatureEntry:
    """One list row: the resolved feature file, its label string, the video name and the crop index."""

    path: Path
    label: str
    video: str
    crop: int


def resolve_feature_path(listed: str, features_root: str | Path | None, list_prefix: str) -> Path:
    """Where the feature file of a list row is on this machine.

    Args:
        listed: The path as written in the CSV.
        features_root: Replaces ``list_prefix`` (and is the base of relative paths); ``None`` keeps paths as listed.
        list_prefix: The authors' directory prefix, e.g. ``/data/VAD/UCFCrime/``.

    Raises:
        DataError: An absolute path outside ``list_prefix`` while a ``features_root`` is given.
    """
    if features_root is None:
        return Path(listed)
    posix = listed.replace("\\", "/")
    prefix = list_prefix.rstrip("/") + "/"
    if prefix != "/" and posix.startswith(prefix):
        return Path(features_root, *PurePosixPath(posix[len(prefix):]).parts)
    if PurePosixPath(posix).is_absolute():
        raise DataError(f"list path {listed!r} does not start with the list prefix {prefix!r}, so --features-root "
                        "cannot be applied; pass the prefix your list uses (--list-prefix) or write relative paths.")
    return Path(features_root, *PurePosixPath(posix).parts)


def read_feature_list(
    csv_path: str | Path, features_root: str | Path | None = None, list_prefix: str = ""
) -> list[FeatureEntry]:
    """Read a ``path,label`` list CSV, in order.

    Raises:
        DataError: The file is missing, its header is wrong or a path is not ``<video>__<crop>.npy``.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"list not found: {csv_path}. The lists come from VadCLIP's list/ folder "
                        "(or `vad synth-features`).")
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise DataError(f"{csv_path}: expected the header 'path,label', got {reader.fieldnames}.")
        entries = []
        for row_number, row in enumerate(reader, start=2):
            parsed = parse_feature_file(row["path"])
            if parsed is None:
                raise DataError(f"{csv_path}:{row_number}: {row['path']!r} does not end in '<video>__<crop>.npy'.")
            path = resolve_feature_path(row["path"], features_root, list_prefix)
            entries.append(FeatureEntry(path, row["label"], *parsed))
    if not entries:
        raise DataError(f"{csv_path} lists no feature files.")
    return entries


def write_feature_list(path: str | Path, rows: Iterable[tuple[str, str]]) -> None:
    """Write a ``path,label`` list CSV atomically (a temporary file in the same folder, then a rename)."""
    path = Path(path)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LIST_HEADER)
    writer.writerows(rows)
    fd, tmp = tempfile.mkstemp(prefix=".list.", suffix=".csv.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class LabelEncoder:
    """Label string → target vector ``[C]`` (spec A.2): one-hot (UCF) or multi-hot over ``-``-joined codes (XD)."""

    def __init__(self, cfg: DSANetConfig) -> None:
        self.labels = [spec.label for spec in cfg.classes]
        self.index = {label: c for c, label in enumerate(self.labels)}
        self.multi = cfg.label_format == "multi_hot"

    @property
    def normal_label(self) -> str:
        return self.labels[0]

    def is_normal(self, label: str) -> bool:
        return label == self.normal_label

    def codes(self, label: str) -> list[str]:
        """The class labels a list label stands for (XD: split on ``-``, padding ``0`` dropped)."""
        return [code for code in label.split("-") if code != "0"] if self.multi else [label]

    def __call__(self, label: str) -> np.ndarray:
        vector = np.zeros(len(self.labels), dtype=np.float32)
        codes = self.codes(label)
        unknown = [code for code in codes if code not in self.index]
        if unknown or not codes:
            raise DataError(f"unknown label {label!r} (codes {unknown}); this preset knows {self.labels}. "
                            "Check that the list belongs to the preset's dataset.")
        vector[[self.index[code] for code in codes]] = 1.0
        return vector


def load_features(path: str | Path, width: int) -> np.ndarray:
    """A feature file as float32 ``[n, width]``, or :class:`DataError` saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"feature file not found: {path}. Check --features-root (it replaces the lists' "
                        "directory prefix) and that the features were extracted for every list row.")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npy array: {exc}") from exc
    if array.ndim != 2 or array.shape[1] != width or array.shape[0] == 0:
        raise DataError(f"{path} has shape {array.shape}; expected [n >= 1, {width}] (one {width}-d CLIP feature "
                        "per 16-frame snippet). Is the preset's visual_width right for these features?")
    if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
        raise DataError(f"{path} must hold finite floating-point values (dtype {array.dtype}).")
    return array.astype(np.float32, copy=False)


def feature_length(path: str | Path, width: int) -> int:
    """Snippet count ``n`` of a feature file, read from its header (memory-mapped), shape-checked."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"feature file not found: {path}. Check --features-root (it replaces the lists' "
                        "directory prefix).")
    try:
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npy array: {exc}") from exc
    if len(shape) != 2 or shape[1] != width or shape[0] == 0:
        raise DataError(f"{path} has shape {shape}; expected [n >= 1, {width}].")
    return int(shape[0])
