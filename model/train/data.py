"""Training data (spec A.4): fitting features to 256 rows, the dataset of list rows and the per-epoch batch plan.

The list files, feature files and labels are the benchmark layout of :mod:`model.benchmark.protocol`. Training
uses every list row (ten crops per video, each a sample). The batch plan of an epoch is a function of
``(seed, epoch)`` only, so a run resumed from a checkpoint sees exactly the batches an uninterrupted run would
have seen (the official scripts draw the order from the global RNG instead, so their exact order cannot be
reproduced anyway).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from model.benchmark.protocol import FeatureEntry, LabelEncoder, load_features
from model.config import DSANetConfig
from model.exceptions import DataError


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
