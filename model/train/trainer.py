"""The DSANet trainer (spec D): one loop for both benchmarks, driven by the preset's ``training`` section.

Per iteration: forward with SGNM, the seven loss terms, zero both optimisers, backward, step the main
optimiser, step the SGNM optimiser, step the SGNM schedule. The model is evaluated on the test set at the
preset's cadence and selected by frame AUC (UCF) or AP (XD); at the end of every epoch the main schedule
steps and, by default (``reset_to_best``, for parity), the weights are reset to the best evaluated ones
while the optimiser states and schedules continue. The result's best weights are the trained model.

A checkpoint (``checkpoint.pt`` in the run directory, read back with ``weights_only=True``) is written at the
end of every epoch, every ``checkpoint_every`` iterations and when a run stops early; a run resumed from it
continues exactly where it stopped (the batch order depends on ``(seed, epoch)`` only and nothing else in
training draws random numbers). Training runs in float32; ``amp`` (CUDA only, bf16/fp16 autocast of the
forward, losses in float32) is opt-in and its effect on the results has not been measured.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from model.benchmark.testset import BenchmarkMetrics, TestSet, evaluate_model
from model.config import DSANetConfig
from model.exceptions import TrainingError
from model.inference import autocast_context
from model.network import DSANet
from model.train.clip_source import TOWER_PREFIX
from model.train.data import TrainBatches
from model.train.losses import LossSettings, LossTerms, dsanet_loss
from model.train.optim import build_optimisation

CHECKPOINT_FORMAT = "dsanet-vad-training-checkpoint"
CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "train_log.jsonl"


@dataclass(frozen=True)
class TrainConfig:
    """Options of one run (the hyper-parameters are the preset's ``training`` section).

    Attributes:
        output_dir: Run directory: ``checkpoint.pt`` and the JSONL log ``train_log.jsonl``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        amp: ``"off"`` (default, float32) or ``"bf16"``/``"fp16"`` autocast on CUDA (unmeasured).
        reset_to_best: Reset the weights to the best ones at the end of each epoch; ``None`` takes the preset's.
        checkpoint_every: Also write the checkpoint every this many iterations (0: at epoch ends only).
        stop_after: Stop (with a checkpoint) once this many iterations have run in total.
        eval_map: Compute the detection mAP at every evaluation (it is logged, never used for selection).
        eval_chunks: 256-row chunks per forward call during evaluation.
        workers: DataLoader worker processes.
        progress: Show tqdm progress bars on stderr.
    """

    output_dir: Path
    device: str = "cpu"
    amp: str = "off"
    reset_to_best: bool | None = None
    checkpoint_every: int = 0
    stop_after: int | None = None
    eval_map: bool = True
    eval_chunks: int = 64
    workers: int = 0
    progress: bool = True


@dataclass
class TrainState:
    """Where a run is: ``epoch`` and ``iteration`` (next to run, 0-based), ``step`` (iterations run in total)."""

    epoch: int = 0
    iteration: int = 0
    step: int = 0
    evaluations: int = 0
    best_value: float = -math.inf
    best_at: dict[str, int] = field(default_factory=dict)
    last_metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :meth:`Trainer.fit`: the best weights (or the last ones if never evaluated) and where they were."""

    weights: dict[str, Tensor]
    metric: str
    best_value: float
    state: TrainState
    completed: bool
    config: DSANetConfig

    def bundle_source(self, **details: Any) -> dict[str, Any]:
        """The ``source`` record of a bundle of these weights; ``details`` add the data, CLIP and device used."""
        cfg = self.config
        return {"kind": "trained", "preset": cfg.name, "dataset": cfg.dataset, "epochs": cfg.training.max_epoch,
                "iterations": self.state.step, "select_metric": self.metric, "best_metric": self.best_value,
                "best_at": self.state.best_at, "seed": cfg.training.seed, **details}


def trainable_state(model: DSANet) -> dict[str, Tensor]:
    """A CPU copy of the DSANet weights, without the frozen CLIP text tower."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items() if not k.startswith(TOWER_PREFIX)}


def load_trainable_state(model: DSANet, state: dict[str, Tensor]) -> None:
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(TOWER_PREFIX)]
    if missing or result.unexpected_keys:
        raise TrainingError(f"weights do not fit the model: missing {missing[:5]}, "
                            f"unexpected {result.unexpected_keys[:5]}")


def should_evaluate(iteration: int, iterations: int, eval_every: int) -> bool:
    """After 0-based ``iteration`` of an epoch of ``iterations``: every ``eval_every`` (not at 0), or at the end."""
    if eval_every > 0:
        return iteration > 0 and iteration % eval_every == 0
    return iteration == iterations - 1


class Trainer:
    """Trains ``model`` on ``batches`` and selects it on ``test`` (see the module docstring).

    Args:
        model: From :func:`model.train.clip_source.build_training_model` (text tower attached); moved to the device.
        batches: The training batch plan.
        test: The test set used for evaluation and model selection.
        run: Run options.
        clip_sha256: Digest of the CLIP text weights, recorded in checkpoints and checked on resume.
    """

    def __init__(self, model: DSANet, batches: TrainBatches, test: TestSet, run: TrainConfig,
                 clip_sha256: str = "") -> None:
        self.cfg, self.train_cfg, self.run = model.cfg, model.cfg.training, run
        self.device = torch.device(run.device)
        if run.amp != "off" and self.device.type != "cuda":
            raise TrainingError(f"--amp {run.amp} is for CUDA devices; train in float32 on {self.device.type}.")
        if self.device.type == "cuda":  # as the official scripts (process-wide)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        self.model = model.to(self.device)
        self.batches, self.test, self.clip_sha256 = batches, test, clip_sha256
        self.settings = LossSettings.from_training(self.train_cfg)
        self.optimisation = build_optimisation(model, self.train_cfg, batches.schedule_iterations)
        self.scaler = torch.amp.GradScaler("cuda") if run.amp == "fp16" else None
        self.reset_to_best = self.train_cfg.reset_to_best if run.reset_to_best is None else run.reset_to_best
        self.state = TrainState()
        self.best_weights: dict[str, Tensor] | None = None
        self.checkpoint_path = Path(run.output_dir) / CHECKPOINT_NAME
        self.log_path = Path(run.output_dir) / LOG_NAME

    def fit(self, resume: bool = False) -> TrainResult:
        """Train to the preset's ``max_epoch`` (or ``stop_after``); ``resume`` continues from the run's checkpoint."""
        Path(self.run.output_dir).mkdir(parents=True, exist_ok=True)
        if resume:
            self.load_checkpoint(self.checkpoint_path)
            self._truncate_log()
        elif self.log_path.exists():
            self.log_path.unlink()
        while self.state.epoch < self.train_cfg.max_epoch:
            if self._run_epoch():
                self.save_checkpoint(self.checkpoint_path)
                return self._result(completed=False)
            self._end_epoch()
            self.save_checkpoint(self.checkpoint_path)
        if self.state.evaluations == 0:
            self._evaluate(self.state.epoch - 1, -1)  # an eval cadence longer than the epochs: select at least once
        return self._result(completed=True)

    def _result(self, completed: bool) -> TrainResult:
        weights = self.best_weights if self.best_weights is not None else trainable_state(self.model)
        metric = self.train_cfg.select_metric
        return TrainResult(weights, metric, self.state.best_value, self.state, completed, self.cfg)

    def _run_epoch(self) -> bool:
        """The rest of the current epoch; ``True`` when ``stop_after`` stopped it."""
        state, total = self.state, self.batches.iterations
        batches = self.batches.batches(state.epoch, state.iteration, self.run.workers)
        with tqdm(total=total, initial=state.iteration, desc=f"epoch {state.epoch + 1}/{self.train_cfg.max_epoch}",
                  file=sys.stderr, disable=not self.run.progress, leave=False) as bar:
            for features, targets, lengths in batches:
                started, rates = time.perf_counter(), self.optimisation.learning_rates()
                terms = self.train_step(features, targets, lengths)
                self._log({"kind": "train", "epoch": state.epoch, "iteration": state.iteration, "step": state.step,
                           **terms.as_floats(), **rates, "seconds": time.perf_counter() - started})
                finished, state.iteration, state.step = state.iteration, state.iteration + 1, state.step + 1
                bar.update(1)
                bar.set_postfix(loss=f"{float(terms.total.detach()):.4f}", best=f"{state.best_value:.4f}")
                if should_evaluate(finished, total, self.train_cfg.eval_every):
                    self._evaluate(state.epoch, finished)
                if self.run.stop_after is not None and state.step >= self.run.stop_after:
                    return True
                if self.run.checkpoint_every and state.step % self.run.checkpoint_every == 0:
                    self.save_checkpoint(self.checkpoint_path)
        return False

    def train_step(self, features: Tensor, targets: Tensor, lengths: Tensor) -> LossTerms:
        """One optimisation step on a batch; returns the loss terms."""
        self.model.train()
        features, targets, lengths = (t.to(self.device, non_blocking=True) for t in (features, targets, lengths))
        with autocast_context(self.device, "fp32" if self.run.amp == "off" else self.run.amp):
            out = self.model(features, lengths, with_sgnm=True)
        terms = dsanet_loss(out, lengths, targets, self.settings)
        self.optimisation.zero_grad()
        (self.scaler.scale(terms.total) if self.scaler is not None else terms.total).backward()
        self.optimisation.step(self.scaler)
        return terms

    def _evaluate(self, epoch: int, iteration: int) -> BenchmarkMetrics:
        """Evaluate now (after ``iteration`` of ``epoch``); keep the weights when the selection metric improves."""
        state = self.state
        metrics = evaluate_model(self.model, self.test, self.run.eval_map, self.run.eval_chunks)
        value = metrics.value(self.train_cfg.select_metric)
        improved = value > state.best_value
        state.evaluations += 1
        state.last_metrics = metrics.to_dict()
        if improved:
            state.best_value = value
            state.best_at = {"epoch": epoch, "iteration": iteration, "step": state.step}
            self.best_weights = trainable_state(self.model)
        self._log({"kind": "eval", "epoch": epoch, "iteration": iteration, "step": state.step,
                   **metrics.to_dict(), "metric": self.train_cfg.select_metric, "value": value, "improved": improved,
                   "best": state.best_value})
        return metrics

    def _end_epoch(self) -> None:
        self.optimisation.end_epoch()
        reset = self.reset_to_best and self.best_weights is not None
        if reset and self.best_weights is not None:
            load_trainable_state(self.model, self.best_weights)
        self._log({"kind": "epoch", "epoch": self.state.epoch, "reset_to_best": reset, "best": self.state.best_value,
                   "best_at": self.state.best_at})
        self.state.epoch, self.state.iteration = self.state.epoch + 1, 0

    def _truncate_log(self) -> None:
        """Drop log records written after the checkpoint (a run that died between checkpoints) before going on."""
        if not self.log_path.exists():
            return
        kept = [line for line in self.log_path.read_text().splitlines() if self._logged_before(json.loads(line))]
        self.log_path.write_text("".join(line + "\n" for line in kept))

    def _logged_before(self, record: dict[str, Any]) -> bool:
        """Whether a log record belongs to the run up to the current state (iteration records carry their index)."""
        if record["kind"] == "train":
            return bool(record["step"] < self.state.step)
        if record["kind"] == "eval":
            return bool(record["step"] <= self.state.step)
        return bool(record["epoch"] < self.state.epoch)

    def _log(self, record: dict[str, Any]) -> None:
        finite = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        with self.log_path.open("a") as handle:
            handle.write(json.dumps(finite) + "\n")

    def save_checkpoint(self, path: Path) -> None:
        """Everything a resumed run needs, written atomically."""
        payload = {"format": CHECKPOINT_FORMAT, "version": 1, "config": self.cfg.to_json(),
                   "clip_sha256": self.clip_sha256, "state": asdict(self.state),
                   "model": trainable_state(self.model), "best_weights": self.best_weights,
                   "optimisation": self.optimisation.state_dict(),
                   "scaler": self.scaler.state_dict() if self.scaler is not None else None}
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: Path) -> None:
        """Restore a run saved by :meth:`save_checkpoint` (``weights_only=True``), refusing a different setup."""
        if not path.is_file():
            raise TrainingError(f"no checkpoint to resume from at {path}; start without --resume.")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != CHECKPOINT_FORMAT:
            raise TrainingError(f"{path} is not a dsanet-vad training checkpoint.")
        if payload["config"] != self.cfg.to_json():
            raise TrainingError(f"{path} was written with another preset or training options; resume with the "
                                "same preset and options (epochs, batch size, lr...) or use another --output-dir.")
        if payload["clip_sha256"] != self.clip_sha256:
            raise TrainingError(f"{path} was trained with other CLIP text weights; pass the same CLIP source.")
        load_trainable_state(self.model, payload["model"])
        self.best_weights = payload["best_weights"]
        self.optimisation.load_state_dict(payload["optimisation"])
        if self.scaler is not None and payload["scaler"] is not None:
            self.scaler.load_state_dict(payload["scaler"])
        self.state = TrainState(**payload["state"])
