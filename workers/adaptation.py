"""Adaptation from verdicts: fine-tune DSANet on one camera's reviewed events and normal windows, and judge the result.

The data are saved CLIP features (:mod:`vad.storage.features`), never decoded video: each reviewed event's window
(a false alarm is a normal video, a true alert an abnormal one whose anomaly is the event's snippets) and the
stream's normal windows (normal videos). :func:`split` holds a share of each kind out, deterministically (by a hash
of the name, so a repeated adaptation holds out the same ones); :func:`fine_tune` trains with the project's trainer
(:func:`model.train.run.train_bundle`) from the parent's DSANet weights with the base model's frozen CLIP text
tower, keeping the last weights (selection on the held-out data would spend them); :func:`held_out_metrics`
scores parent and candidate on the held-out part with the offline test procedure, for the rule of
:func:`vad.bundles.offline_rule`.

The candidate bundle carries DSANet's weights and class embeddings only: a worker runs it beside the CLIP encoder
it already holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from model.benchmark.testset import BenchmarkFiles, load_test_set
from model.bundle import Bundle
from model.config import DSANetConfig
from model.exceptions import DataError
from model.inference import DSANetPredictor
from model.train.clip_source import clip_from_bundle
from model.train.run import train_bundle
from model.train.trainer import TrainConfig
from vad.bundles import HeldOutMetrics
from workers.reviews import TrainingVideo, write_training_folder

SampleKind = Literal["true_alert", "false_alarm", "normal"]


@dataclass(frozen=True)
class Sample:
    """One reviewed event or normal window: its name (event id or window name), kind, ``[T, D]`` features, the
    anomaly's rows (true alerts) and its preset label."""

    name: str
    kind: SampleKind
    features: np.ndarray
    label: str
    anomaly_rows: tuple[int, int] | None = None


@dataclass(frozen=True)
class Adapted:
    """A fine-tuned candidate and what it was trained and judged on."""

    bundle: Bundle
    metrics: HeldOutMetrics
    data: dict[str, Any]
    training: dict[str, Any]


def _rank(name: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def split(samples: Sequence[Sample], holdout: float, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """``(train, held out)``: per kind, the ``holdout`` share (at least one when a kind has two or more, never
    all), chosen by a hash of the name."""
    train: list[Sample] = []
    held: list[Sample] = []
    for kind in ("true_alert", "false_alarm", "normal"):
        group = sorted((s for s in samples if s.kind == kind), key=lambda s: _rank(s.name, seed))
        n_held = min(len(group) - 1, max(1, round(holdout * len(group)))) if len(group) >= 2 else 0
        held += group[:n_held]
        train += group[n_held:]
    return train, held


def _video(sample: Sample) -> TrainingVideo:
    folder = "Normal" if sample.kind == "normal" else "Reviews"
    return TrainingVideo(f"{folder}/{sample.label}/{sample.name}", sample.label, sample.features, sample.anomaly_rows)


def fine_tune_config(cfg: DSANetConfig, train: Sequence[Sample], epochs: int, lr: float) -> DSANetConfig:
    """The preset's training section for a camera's few samples: the batch fits them, evaluation at epoch ends, the
    weights never reset to an evaluated best.

    Raises:
        DataError: No true alert or no normal sample to train on.
    """
    abnormal = sum(1 for s in train if s.kind == "true_alert")
    normal = len(train) - abnormal
    if abnormal == 0 or normal == 0:
        raise DataError(f"fine-tuning needs at least one true alert and one false alarm or normal window outside the "
                        f"held-out share; it has {abnormal} true alerts and {normal} normal samples: give more "
                        "verdicts")
    # a camera has tens of samples, not thousands: batches of a quarter of the scarcer kind give a few steps an epoch
    scarce = min(normal, abnormal) if cfg.training.batch_layout == "paired" else len(train)
    size = min(cfg.training.batch_size, max(1, scarce // 4))
    training = dataclasses.replace(cfg.training, lr=lr, max_epoch=epochs, batch_size=size, eval_every=0,
                                   reset_to_best=False, sgnm_warmup_iterations=0)
    return cfg.replace(training=training)


def fine_tune(base: Bundle, parent: Bundle, train: Sequence[Sample], held: Sequence[Sample], *, epochs: int,
              lr: float, device: str = "cpu", run_dir: Path | None = None,
              progress: Callable[[str, float], None] = lambda stage, fraction: None) -> Adapted:
    """Fine-tune ``parent`` on ``train`` (the text tower of ``base``, the deployment's bundle) and compare it with
    ``parent`` on ``held``.

    Raises:
        DataError: Too few samples to train on.
        TrainingError: The base bundle carries no CLIP text tower, or the weights do not fit.
    """
    cfg = fine_tune_config(parent.config, train, epochs, lr)
    clip = clip_from_bundle(base)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="vad-adapt-") as scratch:
        root = Path(scratch)
        write_training_folder(root, cfg, [_video(s) for s in train])
        files = BenchmarkFiles(cfg, root / "list", root)
        progress("training", 0.0)
        trained = train_bundle(cfg, clip, files.read_list(files.train_list), load_test_set(files),
                               TrainConfig(run_dir or root / "run", device=device, progress=False, eval_map=False),
                               keep="last", init=parent, demo=parent.demo,
                               details=lambda result: {"kind": "adapted", "parent": parent.sha256})
    assert trained.bundle is not None  # no stop_after: the run completes
    candidate = dataclasses.replace(trained.bundle, clip_state_dict={}, clip=dict(parent.clip))
    progress("comparing", 0.9)
    metrics = held_out_metrics(parent, candidate, held, device)
    data = {"train": {kind: [s.name for s in train if s.kind == kind] for kind in ("true_alert", "false_alarm",
                                                                                   "normal")},
            "held_out": {kind: [s.name for s in held if s.kind == kind] for kind in ("true_alert", "false_alarm",
                                                                                    "normal")},
            "snippets": int(sum(len(s.features) for s in train))}
    training = {"epochs": epochs, "lr": lr, "batch_size": cfg.training.batch_size,
                "iterations": trained.result.state.step, "seconds": round(time.time() - started, 2),
                "device": device, "samples": trained.samples}
    return Adapted(candidate, metrics, data, training)


def _auc(scores: list[np.ndarray], labels: list[np.ndarray]) -> float | None:
    from sklearn.metrics import roc_auc_score

    y = np.concatenate(labels) if labels else np.zeros(0)
    if len(np.unique(y)) != 2:
        return None
    return float(roc_auc_score(y, np.concatenate(scores)))


def _calibrated(scores: list[np.ndarray], held: Sequence[Sample]) -> tuple[float | None, int | None]:
    """The highest threshold that catches every held-out true alert (its peak over the anomaly's rows), and how many
    held-out negatives reach it."""
    peaks = [float(s[a.anomaly_rows[0]:a.anomaly_rows[1] + 1].max()) for s, a in zip(scores, held, strict=True)
             if a.kind == "true_alert" and a.anomaly_rows is not None]
    if not peaks:
        return None, None
    threshold = min(peaks)
    raised = sum(1 for s, a in zip(scores, held, strict=True) if a.kind != "true_alert" and float(s.max()) >= threshold)
    return threshold, raised


def held_out_metrics(parent: Bundle, candidate: Bundle, held: Sequence[Sample], device: str = "cpu"
                     ) -> HeldOutMetrics:
    """Snippet AUC of both models on the held-out samples (a true alert's anomaly rows positive, every other row
    negative), and each one's false alarms at the threshold that keeps every held-out true alert."""
    labels = []
    for sample in held:
        y = np.zeros(len(sample.features), dtype=np.int8)
        if sample.anomaly_rows is not None:
            y[sample.anomaly_rows[0]:sample.anomaly_rows[1] + 1] = 1
        labels.append(y)
    results: dict[str, tuple[float | None, float | None, int | None]] = {}
    for role, bundle in (("parent", parent), ("candidate", candidate)):
        predictor = DSANetPredictor(bundle, device=device)
        scores = [predictor.score(s.features).anomaly for s in held]
        results[role] = (_auc(scores, labels), *_calibrated(scores, held))
    counts = {kind: sum(1 for s in held if s.kind == kind) for kind in ("true_alert", "false_alarm", "normal")}
    return HeldOutMetrics(true_alerts=counts["true_alert"], false_alarms=counts["false_alarm"],
                          normal_windows=counts["normal"],
                          parent_auc=results["parent"][0], candidate_auc=results["candidate"][0],
                          parent_threshold=results["parent"][1], candidate_threshold=results["candidate"][1],
                          parent_false_alarms=results["parent"][2], candidate_false_alarms=results["candidate"][2])
