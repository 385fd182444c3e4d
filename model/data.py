"""Datasets over the VadCLIP feature layout (spec A): lists, label vectors, fitting to 256 rows, batches.

A list CSV has the header ``path,label`` and one row per feature file ``<video>__<crop>.npy`` (``[n, D]``
float32, one row per 16-frame snippet). Its paths carry the authors' directory prefix (the preset's
``list_prefix``, e.g. ``/data/VAD/UCFCrime/``), which :func:`resolve_feature_path` replaces by a
``features_root``. Training uses every row (ten crops per video, each a sample); a test list has one crop
per video. The batch plan of an epoch is a function of ``(seed, epoch)`` only, so a run resumed from a
checkpoint sees exactly the batches an uninterrupted run would have seen (the official scripts draw the
order from the global RNG instead, so their exact order cannot be reproduced anyway).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from model.config import DSANetConfig
from model.exceptions import DataError

_FEATURE_FILE = re.compile(r"^(?P<video>.+)__(?P<crop>\d+)\.npy$")


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
            match = _FEATURE_FILE.match(re.split(r"[\\/]", row["path"])[-1])
            if match is None:
                raise DataError(f"{csv_path}:{row_number}: {row['path']!r} does not end in '<video>__<crop>.npy'.")
            path = resolve_feature_path(row["path"], features_root, list_prefix)
            entries.append(FeatureEntry(path, row["label"], match["video"], int(match["crop"])))
    if not entries:
        raise DataError(f"{csv_path} lists no feature files.")
    return entries


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


def fit_to_length(features: np.ndarray, length: int) -> tuple[np.ndarray, int]:
    """Training fit (spec A.4): zero-pad ``n <= length`` rows, else uniform average pooling to ``length`` rows.

    Returns:
        ``[length, D]`` float32 and the valid length (``n``, or ``length`` when pooled).
    """
    n = features.shape[0]
    if n <= length:
        out = np.zeros((length, features.shape[1]), dtype=np.float32)
        out[:n] = features
        return out, n
    return uniform_pool(features, length), length


def uniform_pool(features: np.ndarray, length: int) -> np.ndarray:
    """Row ``i`` is the mean of rows ``r[i] … r[i+1]−1``, ``r = int32(linspace(0, n, length + 1))`` (official)."""
    edges = np.linspace(0, len(features), length + 1, dtype=np.int32)
    out = np.zeros((length, features.shape[1]), dtype=np.float32)
    for i in range(length):
        start, end = edges[i], edges[i + 1]
        out[i] = features[start:end].mean(axis=0) if end > start else features[start]
    return out


class FeatureDataset(Dataset):
    """Training samples: ``(features [T, D] float32, target [C] float32, valid length)`` per list row."""

    def __init__(self, entries: Sequence[FeatureEntry], cfg: DSANetConfig) -> None:
        self.entries = list(entries)
        self.cfg = cfg
        encoder = LabelEncoder(cfg)
        self.targets = [encoder(entry.label) for entry in self.entries]  # unknown labels fail here, up front
        self.normal = np.array([encoder.is_normal(entry.label) for entry in self.entries], dtype=bool)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        features = load_features(self.entries[index].path, self.cfg.visual_width)
        fitted, valid = fit_to_length(features, self.cfg.visual_length)
        return torch.from_numpy(fitted), torch.from_numpy(self.targets[index]), valid


def _split(indices: np.ndarray, size: int, drop_last: bool) -> list[list[int]]:
    stop = len(indices) - len(indices) % size if drop_last else len(indices)
    return [indices[i:i + size].tolist() for i in range(0, stop, size)]


class TrainBatches:
    """The per-epoch batch plan of the preset's ``batch_layout`` and its loader.

    ``"paired"`` (UCF): shuffled normal and anomalous samples in batches of ``batch_size`` each
    (``drop_last``); iteration ``i`` concatenates normal batch ``i`` then anomalous batch ``i``; an epoch is
    ``min`` of the two batch counts. ``"mixed"`` (XD): all samples shuffled in batches of ``batch_size``,
    the last one kept. :attr:`schedule_iterations` is the number of batches of all loaders together, the
    official SGNM schedule length per epoch (UCF: 125 + 126 although 125 iterations run).
    """

    def __init__(self, dataset: FeatureDataset, batch_size: int, layout: str, seed: int) -> None:
        if layout not in ("paired", "mixed"):
            raise DataError(f"unknown batch layout {layout!r}: use 'paired' or 'mixed'.")
        self.dataset, self.batch_size, self.layout, self.seed = dataset, batch_size, layout, seed
        normal = int(dataset.normal.sum())
        if layout == "paired":
            self.batch_counts = [normal // batch_size, (len(dataset) - normal) // batch_size]
            self.iterations = min(self.batch_counts)
        else:
            self.batch_counts = [-(-len(dataset) // batch_size)]
            self.iterations = self.batch_counts[0]
        if self.iterations == 0:
            raise DataError(f"{len(dataset)} training samples ({normal} normal) give no full batch of {batch_size} "
                            f"in layout {layout!r}; lower the batch size.")

    @property
    def schedule_iterations(self) -> int:
        return sum(self.batch_counts)

    def plan(self, epoch: int) -> list[list[int]]:
        """Index batches of ``epoch``, a function of ``(seed, epoch)`` alone."""
        rng = np.random.default_rng([self.seed, epoch])
        if self.layout == "mixed":
            return _split(rng.permutation(len(self.dataset)), self.batch_size, drop_last=False)
        normal = rng.permutation(np.flatnonzero(self.dataset.normal))
        anomalous = rng.permutation(np.flatnonzero(~self.dataset.normal))
        pairs = zip(_split(normal, self.batch_size, True), _split(anomalous, self.batch_size, True), strict=False)
        return [n + a for n, a in pairs]

    def batches(self, epoch: int, start: int = 0, workers: int = 0) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """``(features [B, T, D], targets [B, C], lengths [B])`` from iteration ``start`` of ``epoch``."""
        plan = self.plan(epoch)[start:]
        if not plan:
            return iter(())
        return iter(DataLoader(self.dataset, batch_sampler=plan, num_workers=workers))
