"""The trainer on a small synthetic benchmark: it learns, every loss term decreases, resume is exact."""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

import pytest
import torch

from model.benchmark.index import packaged_index
from model.benchmark.synthetic import SynthOptions, write_synthetic_benchmark
from model.benchmark.testset import BenchmarkFiles, load_test_set
from model.config import DSANetConfig
from model.exceptions import TrainingError
from model.train.clip_source import build_training_model, random_clip
from model.train.data import FeatureDataset, TrainBatches
from model.train.optim import warmup_cosine_table
from model.train.trainer import TrainConfig, Trainer, should_evaluate, trainable_state
from tests.conftest import tiny_config

WIDTH = 64


def reduced_config(**training: object) -> DSANetConfig:
    """The UCF preset's structure at width 64, 64-snippet windows, with a faster schedule for tests."""
    cfg = tiny_config("ucf", width=WIDTH).replace(visual_length=64)
    return cfg.replace(training=dataclasses.replace(cfg.training, **training))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic-ucf")
    write_synthetic_benchmark(root, reduced_config(), packaged_index("ucf"),
                              SynthOptions(scale=0.03, max_snippets=80, width=WIDTH, signal=8.0))
    return root


def make_trainer(root: Path, cfg: DSANetConfig, run_dir: Path, **run: object) -> Trainer:
    files = BenchmarkFiles(cfg, root / "list", root)
    batches = TrainBatches(FeatureDataset(files.read_list(files.train_list), cfg), cfg.training.batch_size,
                           cfg.training.batch_layout, cfg.training.seed)
    clip = random_clip(cfg, seed=0)
    model = build_training_model(cfg, clip, cfg.training.seed)
    options = {"progress": False, "eval_map": False, **run}
    return Trainer(model, batches, load_test_set(files), TrainConfig(run_dir, **options), clip.text_sha256)


def log_records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "train_log.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["kind"] == kind]


def test_official_evaluation_cadence() -> None:
    ucf = [i for i in range(125) if should_evaluate(i, 125, 10)]
    assert ucf == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]  # 12 per epoch, 0-based as the official loop
    assert [i for i in range(412) if should_evaluate(i, 412, 0)] == [411]


@pytest.mark.slow
def test_training_learns_the_synthetic_benchmark(synthetic: Path, tmp_path: Path) -> None:
    cfg = reduced_config(lr=1e-3, batch_size=8, max_epoch=3, eval_every=9)
    trainer = make_trainer(synthetic, cfg, tmp_path, eval_map=True)
    result = trainer.fit()
    assert result.completed and result.metric == "auc"
    assert result.best_value >= 0.9, f"best frame AUC {result.best_value:.3f} on held-out synthetic videos"
    evals = log_records(tmp_path, "eval")
    best = max(evals, key=lambda record: record["auc"])
    assert best["average_map"] > 10.0, f"detection mAP {best['average_map']:.2f}"  # untrained: about 3-8
    assert result.weights.keys() == trainable_state(trainer.model).keys()
    steps = log_records(tmp_path, "train")
    for term in ("l1_coarse", "l2_mil_align", "l3_separation", "l4_event", "l5_background", "l6_consistency",
                 "l7_compactness", "total"):
        first = statistics.mean(r[term] for r in steps[:8])
        last = statistics.mean(r[term] for r in steps[-8:])
        assert last < first, f"{term}: {first:.4f} -> {last:.4f}"


def test_resume_continues_exactly_where_it_stopped(synthetic: Path, tmp_path: Path) -> None:
    cfg = reduced_config(lr=1e-3, batch_size=16, max_epoch=2, eval_every=5)
    straight = make_trainer(synthetic, cfg, tmp_path / "straight")
    expected = straight.fit()
    assert expected.completed and expected.state.step == 2 * straight.batches.iterations

    first = make_trainer(synthetic, cfg, tmp_path / "resumed", stop_after=20)
    stopped = first.fit()
    assert not stopped.completed and stopped.state.step == 20 and stopped.state.epoch == 1
    with (tmp_path / "resumed" / "train_log.jsonl").open("a") as log:  # as if it had died after a later iteration
        log.write(json.dumps({"kind": "train", "epoch": 1, "iteration": 6, "step": 20, "total": -1.0}) + "\n")
    resumed = make_trainer(synthetic, cfg, tmp_path / "resumed").fit(resume=True)
    assert resumed.completed and resumed.state.step == expected.state.step
    assert resumed.best_value == expected.best_value and resumed.state.best_at == expected.state.best_at
    for key, value in expected.weights.items():
        assert torch.equal(value, resumed.weights[key]), key
    losses = [[r["total"] for r in log_records(tmp_path / name, "train")] for name in ("straight", "resumed")]
    assert losses[0] == losses[1]
    first_steps = log_records(tmp_path / "straight", "train")[:2]
    table = warmup_cosine_table(1e-3, 2 * straight.batches.schedule_iterations)  # shorter than the 100 warm-up steps
    assert first_steps[0]["lr_sgnm"] == 0.0 and first_steps[1]["lr_sgnm"] == pytest.approx(table[1])


def test_reset_to_best_at_each_epoch_end(synthetic: Path, tmp_path: Path) -> None:
    cfg = reduced_config(lr=1e-3, batch_size=16, max_epoch=1, eval_every=4)
    with_reset = make_trainer(synthetic, cfg, tmp_path / "reset")
    result = with_reset.fit()
    current = trainable_state(with_reset.model)
    assert all(torch.equal(current[k], v) for k, v in result.weights.items())
    assert log_records(tmp_path / "reset", "epoch")[0]["reset_to_best"] is True
    without = make_trainer(synthetic, cfg, tmp_path / "keep", reset_to_best=False)
    kept = without.fit()
    current = trainable_state(without.model)
    assert not all(torch.equal(current[k], v) for k, v in kept.weights.items())  # trained past the last evaluation


def test_resume_refuses_another_setup(synthetic: Path, tmp_path: Path) -> None:
    cfg = reduced_config(batch_size=16, max_epoch=1, eval_every=4)
    make_trainer(synthetic, cfg, tmp_path, stop_after=1).fit()
    other = make_trainer(synthetic, reduced_config(batch_size=16, max_epoch=1, eval_every=4, lr=1e-3), tmp_path)
    with pytest.raises(TrainingError, match="another preset or training options"):
        other.fit(resume=True)
    with pytest.raises(TrainingError, match="no checkpoint"):
        make_trainer(synthetic, cfg, tmp_path / "empty").fit(resume=True)
    changed_clip = make_trainer(synthetic, cfg, tmp_path)
    changed_clip.clip_sha256 = "0" * 64
    with pytest.raises(TrainingError, match="CLIP"):
        changed_clip.fit(resume=True)


def test_amp_is_refused_on_cpu(synthetic: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="CUDA"):
        make_trainer(synthetic, reduced_config(batch_size=16), tmp_path, amp="bf16")


# --- where the CLIP text tower comes from --------------------------------------------------------------------


def test_clip_weights_from_a_state_dict_file(tmp_path: Path) -> None:
    from model.train.clip_source import clip_from_file
    from tests.conftest import TINY_CLIP, random_clip_state_dict

    cfg = reduced_config()
    state = random_clip_state_dict(TINY_CLIP, seed=5)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "clip.pt")
    clip = clip_from_file(tmp_path / "clip.pt", cfg)
    assert clip.state_dict.keys() == state.keys() and not clip.random and clip.identity["model_name"] == "custom"
    model = build_training_model(cfg, clip, seed=0)
    tower = model.text_encoder.tower.state_dict()
    assert torch.equal(tower["token_embedding.weight"], state["token_embedding.weight"])
    assert not any(p.requires_grad for p in model.text_encoder.tower.parameters())


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_unusable_clip_weights_are_refused_with_how_to_get_them(tmp_path: Path) -> None:
    from model.train.clip_source import clip_from_file

    cfg = reduced_config()
    with pytest.raises(TrainingError, match="--init-bundle"):
        clip_from_file(tmp_path / "missing.pt", cfg)
    torch.save({"weight": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(TrainingError, match="no OpenAI-named CLIP text tower"):
        clip_from_file(tmp_path / "other.pt", cfg)
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "scripted.pt")  # read, but no text tower
    with pytest.raises(TrainingError, match="no OpenAI-named CLIP text tower"):
        clip_from_file(tmp_path / "scripted.pt", cfg)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(TrainingError, match="not a readable CLIP checkpoint"):
        clip_from_file(tmp_path / "junk.pt", cfg)
    wrong = random_clip(tiny_config("ucf", width=WIDTH).replace(text=dataclasses.replace(cfg.text, width=32)), 0)
    with pytest.raises(TrainingError, match="do not fit"):
        build_training_model(cfg, wrong, seed=0)


def test_random_clip_is_seeded_and_marked() -> None:
    cfg = reduced_config()
    a, b = random_clip(cfg, 1), random_clip(cfg, 1)
    assert a.random and a.identity["random"] is True and "demo" in a.description
    assert a.text_sha256 == b.text_sha256 != random_clip(cfg, 2).text_sha256
