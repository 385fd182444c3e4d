"""Training data (spec A.4): fitting to 256 rows, the dataset of list rows, batch plans."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.benchmark.protocol import read_feature_list
from model.exceptions import DataError
from model.train.data import FeatureDataset, TrainBatches, fit_to_length, uniform_pool
from tests.conftest import tiny_config

# --- fitting (spec A.4) ----------------------------------------------------------------------------------------


def test_short_sequences_are_zero_padded() -> None:
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    fitted, length = fit_to_length(x, 8)
    assert length == 6 and fitted.shape == (8, 2)
    np.testing.assert_array_equal(fitted[:6], x)
    assert not fitted[6:].any()
    same, length = fit_to_length(np.ones((8, 2), np.float32), 8)
    assert length == 8 and same.shape == (8, 2)


def test_long_sequences_are_uniformly_average_pooled() -> None:
    # n = 10 to 4 rows: edges int32(linspace(0, 10, 5)) = [0, 2, 5, 7, 10] -> means of rows 0-1, 2-4, 5-6, 7-9.
    x = np.arange(10, dtype=np.float32)[:, None] * np.array([[1.0, -2.0]], np.float32)
    fitted, length = fit_to_length(x, 4)
    assert length == 4
    np.testing.assert_allclose(fitted[:, 0], [0.5, 3.0, 5.5, 8.0])
    np.testing.assert_allclose(fitted[:, 1], [-1.0, -6.0, -11.0, -16.0])


def test_pooling_300_rows_to_256() -> None:
    x = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
    pooled = uniform_pool(x, 256)
    edges = [int(300 * i / 256) for i in range(257)]
    expected = np.stack([x[edges[i]:edges[i + 1]].mean(axis=0) for i in range(256)])
    np.testing.assert_allclose(pooled, expected, rtol=1e-6)


# --- datasets and batch plans ----------------------------------------------------------------------------------


def _dataset(tmp_path: Path, preset: str, labels: list[str], lengths: list[int] | None = None) -> FeatureDataset:
    cfg = tiny_config(preset, width=16).replace(visual_length=64)
    rows = []
    for i, label in enumerate(labels):
        n = lengths[i] if lengths else 10 + i
        np.save(tmp_path / f"v{i}__0.npy", np.full((n, 16), i, np.float32))
        rows.append(f"v{i}__0.npy,{label}")
    (tmp_path / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return FeatureDataset(read_feature_list(tmp_path / "train.csv", tmp_path, ""), cfg)


def test_dataset_items(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "xd", ["A", "B1-B2-0"], lengths=[5, 100])
    features, target, length = dataset[1]
    assert features.shape == (64, 16) and features.dtype == torch.float32 and length == 64
    assert target.tolist() == [0, 1, 1, 0, 0, 0, 0]
    features, target, length = dataset[0]
    assert length == 5 and not features[5:].any() and target[0] == 1
    assert dataset.normal.tolist() == [True, False]


def test_dataset_refuses_unknown_labels_up_front(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown label"):
        _dataset(tmp_path, "ucf", ["Normal", "Riot"])


def test_paired_plan_puts_normal_first_and_drops_partial_batches(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "ucf", ["Normal"] * 9 + ["Abuse"] * 13)
    batches = TrainBatches(dataset, batch_size=4, layout="paired", seed=3)
    assert batches.batch_counts == [2, 3] and batches.iterations == 2 and batches.schedule_iterations == 5
    plan = batches.plan(0)
    assert len(plan) == 2 and all(len(b) == 8 for b in plan)
    for batch in plan:
        assert dataset.normal[batch[:4]].all() and not dataset.normal[batch[4:]].any()
    assert plan == batches.plan(0) and plan != batches.plan(1)
    features, targets, lengths = next(batches.batches(0))
    assert features.shape == (8, 64, 16) and targets.shape == (8, 14) and lengths.dtype == torch.int64
    assert (targets[:4, 0] == 1).all() and (targets[4:, 1] == 1).all()


def test_mixed_plan_keeps_the_last_batch_and_resumes_mid_epoch(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "xd", ["A"] * 6 + ["B1-0-0"] * 5)
    batches = TrainBatches(dataset, batch_size=4, layout="mixed", seed=0)
    plan = batches.plan(2)
    assert [len(b) for b in plan] == [4, 4, 3] and sorted(i for batch in plan for i in batch) == list(range(11))
    assert batches.iterations == batches.schedule_iterations == 3
    resumed = list(batches.batches(2, start=1))
    assert len(resumed) == 2
    expected = torch.tensor([dataset[i][2] for i in plan[1]])
    assert torch.equal(resumed[0][2], expected)
    assert list(batches.batches(2, start=3)) == []


def test_a_plan_without_a_full_batch_is_refused(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "ucf", ["Normal"] * 3 + ["Abuse"] * 8)
    with pytest.raises(DataError, match="no full batch"):
        TrainBatches(dataset, batch_size=4, layout="paired", seed=0)
    with pytest.raises(DataError, match="layout"):
        TrainBatches(dataset, batch_size=4, layout="zip", seed=0)
