"""train_bundle: the one orchestration of `vad train` and the demo build."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.benchmark.testset import BenchmarkFiles, load_test_set
from model.exceptions import DataError
from model.train.clip_source import random_clip
from model.train.run import TrainingPlan, train_bundle
from model.train.trainer import TrainConfig
from tests.unit.model.train.test_training import reduced_config, synthetic  # noqa: F401 - the module fixture


def _train(root: Path, run_dir: Path, keep: str, **kwargs: object):  # type: ignore[no-untyped-def]
    cfg = reduced_config(lr=1e-3, batch_size=8, max_epoch=1, eval_every=3, reset_to_best=False)
    files = BenchmarkFiles(cfg, root / "list", root)
    return train_bundle(cfg, random_clip(cfg, seed=0), files.read_list(files.train_list), load_test_set(files),
                        TrainConfig(run_dir, progress=False, eval_map=False), keep=keep, **kwargs)  # type: ignore[arg-type]


def test_best_and_last_weights_and_the_bundle_record(synthetic: Path, tmp_path: Path) -> None:  # noqa: F811
    plans: list[TrainingPlan] = []
    best = _train(synthetic, tmp_path / "best", "best", on_start=plans.append,
                  details=lambda result: {"kind": "test", "steps": result.state.step})
    last = _train(synthetic, tmp_path / "last", "last")
    assert len(plans) == 1 and plans[0].samples == best.samples and plans[0].iterations > 3
    assert best.bundle is not None and last.bundle is not None
    assert best.bundle.demo and best.bundle.source["kind"] == "test" and best.bundle.source["weights"] == "best"
    assert best.bundle.source["steps"] == best.result.state.step == last.result.state.step
    # "best" bundles the selected evaluation's weights, "last" those after the final iteration (the checkpoint's)
    final = torch.load(tmp_path / "last" / "checkpoint.pt", weights_only=True)["model"]
    assert best.result.weights.keys() == final.keys()
    assert any(not torch.equal(best.result.weights[k], final[k]) for k in final), "the best must not be the last"
    for name in final:
        assert torch.equal(best.bundle.state_dict[name], best.result.weights[name])
        assert torch.equal(last.bundle.state_dict[name], final[name])


def test_missing_feature_files_are_named(synthetic: Path, tmp_path: Path) -> None:  # noqa: F811
    cfg = reduced_config()
    files = BenchmarkFiles(cfg, synthetic / "list", tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"training feature files are missing.*--features-root"):
        train_bundle(cfg, random_clip(cfg, seed=0), files.read_list(files.train_list),
                     load_test_set(BenchmarkFiles(cfg, synthetic / "list", synthetic)),
                     TrainConfig(tmp_path / "run", progress=False))
