"""Official test-time procedure: chunking, refinement, the predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.exceptions import InputError
from model.inference import DSANetPredictor, chunk_features, refine_class_probs
from tests.conftest import tiny_bundle


@pytest.mark.parametrize(("n", "k", "last"), [(1, 1, 1), (255, 1, 255), (256, 1, 256), (257, 2, 1),
                                              (512, 2, 256), (1000, 4, 232)])
def test_chunking(n: int, k: int, last: int) -> None:
    feats = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3) + 1
    chunks, lengths = chunk_features(feats, 256)
    assert chunks.shape == (k, 256, 3)
    assert lengths.tolist() == [256] * (k - 1) + [last]
    assert torch.equal(chunks.reshape(-1, 3)[:n], feats)
    assert chunks.reshape(-1, 3)[n:].abs().sum() == 0  # zero padding


def test_refinement_by_hand() -> None:
    logits1 = torch.tensor([[2.0]])
    logits2 = torch.tensor([[1.0, 2.0, 3.0]])
    tau = 5.0
    p = 1 / (1 + np.exp(-2.0 / tau))
    pi = np.exp(np.array([1.0, 2.0, 3.0]) / tau)
    pi /= pi.sum()
    expected = [1 - p, p * pi[1] / (pi[1] + pi[2]), p * pi[2] / (pi[1] + pi[2])]
    got = refine_class_probs(logits1, logits2, tau)[0].double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got.sum() == pytest.approx(1.0)


@pytest.fixture(scope="module")
def predictors() -> dict[str, DSANetPredictor]:
    return {p: DSANetPredictor(tiny_bundle(p, seed=3)) for p in ("ucf", "xd")}


@pytest.mark.parametrize("n", [1, 255, 256, 257, 512, 1000])
def test_predictor_equals_independent_chunk_runs(predictors: dict[str, DSANetPredictor], preset: str, n: int) -> None:
    predictor = predictors[preset]
    feats = torch.from_numpy(np.random.default_rng(n).normal(size=(n, 64)).astype(np.float32))
    scores = predictor.score(feats.numpy())
    assert scores.anomaly.shape == (n,) and scores.class_probs.shape == (n, predictor.config.num_classes)
    assert scores.anomaly.dtype == np.float32 and scores.class_probs.dtype == np.float32
    np.testing.assert_allclose(scores.class_probs.sum(axis=1), 1.0, rtol=1e-5)
    # Each 256-row chunk on its own, one forward call per chunk.
    model, text = predictor.model, predictor.text_features
    for start in range(0, n, 256):
        rows = feats[start:start + 256]
        padded = torch.zeros(1, 256, 64)
        padded[0, : len(rows)] = rows
        with torch.no_grad():
            out = model(padded, torch.tensor([len(rows)]), text)
        expect_anomaly = torch.sigmoid(out.logits1[0, : len(rows), 0]).numpy()
        expect_probs = refine_class_probs(out.logits1, out.logits2, predictor.config.test_temperature)[0, : len(rows)]
        np.testing.assert_allclose(scores.anomaly[start:start + len(rows)], expect_anomaly, atol=1e-6)
        np.testing.assert_allclose(scores.class_probs[start:start + len(rows)], expect_probs.numpy(), atol=1e-6)


def test_batching_of_chunks_does_not_change_results() -> None:
    bundle = tiny_bundle("ucf", seed=4)
    feats = np.random.default_rng(0).normal(size=(1000, 64)).astype(np.float32)
    one = DSANetPredictor(bundle, max_chunks=1).score(feats)
    all_ = DSANetPredictor(bundle, max_chunks=64).score(feats)
    np.testing.assert_allclose(one.anomaly, all_.anomaly, atol=1e-6)
    np.testing.assert_allclose(one.class_probs, all_.class_probs, atol=1e-6)


@pytest.mark.parametrize(("features", "message"), [
    (np.zeros((0, 64), np.float32), "empty"),
    (np.zeros((10, 32), np.float32), "shape"),
    (np.zeros((10,), np.float32), "shape"),
    (np.zeros((10, 64), np.int64), "floating point"),
    (np.full((10, 64), np.nan, np.float32), "NaN"),
])
def test_bad_features_are_refused_clearly(predictors: dict[str, DSANetPredictor], features: np.ndarray,
                                          message: str) -> None:
    with pytest.raises(InputError, match=message):
        predictors["ucf"].score(features)


def test_precision_option_is_validated() -> None:
    with pytest.raises(InputError, match="precision"):
        DSANetPredictor(tiny_bundle("xd"), precision="int8")
