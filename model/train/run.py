"""One way to train a bundle: the data, the trainer, the selection of the weights and the bundle.

``vad train`` and the synthetic demo build both call :func:`train_bundle`; they differ only in where the lists,
the test set and the CLIP weights come from, and in which weights they keep.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from model.benchmark.protocol import FeatureEntry
from model.benchmark.testset import TestSet
from model.bundle import Bundle
from model.config import DSANetConfig
from model.exceptions import DataError
from model.factory import bundle_from_model
from model.train.clip_source import ClipSource, build_training_model
from model.train.data import FeatureDataset, TrainBatches
from model.train.trainer import TrainConfig, Trainer, TrainResult, load_trainable_state

Keep = Literal["best", "last"]


@dataclass(frozen=True)
class TrainingPlan:
    """What a run is about to do, for the caller to report before the first iteration."""

    samples: int
    normal: int
    iterations: int
    epochs: int
    test_videos: int


@dataclass(frozen=True)
class TrainedBundle:
    """The trainer's result and the bundle of the kept weights (``None`` when the run stopped early to resume)."""

    result: TrainResult
    bundle: Bundle | None
    samples: int


def train_bundle(
    cfg: DSANetConfig,
    clip: ClipSource,
    entries: Sequence[FeatureEntry],
    test: TestSet,
    run: TrainConfig,
    *,
    keep: Keep = "best",
    init: Bundle | None = None,
    resume: bool = False,
    demo: bool = False,
    details: Callable[[TrainResult], Mapping[str, Any]] | None = None,
    on_start: Callable[[TrainingPlan], None] | None = None,
) -> TrainedBundle:
    """Train DSANet on the feature files of ``entries``, select on ``test``, and bundle the kept weights.

    Args:
        cfg: The architecture and training preset.
        clip: The CLIP weights (text tower for training; both towers go into the bundle when present).
        entries: The training list's rows (every crop is a sample).
        test: The set the trainer evaluates and selects on.
        run: Run directory, device, checkpoints (see :class:`TrainConfig`).
        keep: ``"best"``: the selected weights; ``"last"``: the weights after the last iteration.
        init: Start from this bundle's DSANet weights (fine-tuning).
        resume: Continue from the run directory's checkpoint.
        demo: Mark the bundle as a demo (also when ``clip`` is random).
        details: Extra fields of the bundle's ``source`` record, from the result.
        on_start: Told the plan once the data is read, before training starts.

    Raises:
        DataError: A listed feature file is missing, or the list gives no full batch.
    """
    dataset = FeatureDataset(entries, cfg)
    missing = [str(e.path) for e in dataset.entries if not e.path.is_file()]
    if missing:
        raise DataError(f"{len(missing)} training feature files are missing, e.g. {missing[:3]}; "
                        "check --features-root")
    batches = TrainBatches(dataset, cfg.training.batch_size, cfg.training.batch_layout, cfg.training.seed)
    model = build_training_model(cfg, clip, cfg.training.seed, init)
    if on_start is not None:
        on_start(TrainingPlan(len(dataset), int(dataset.normal.sum()), batches.iterations, cfg.training.max_epoch,
                              len(test.entries)))
    result = Trainer(model, batches, test, run, clip.text_sha256).fit(resume=resume)
    if not result.completed:
        return TrainedBundle(result, None, len(dataset))
    if keep == "best":
        load_trainable_state(model, result.weights)
    source = result.bundle_source(clip=clip.description, weights=keep, train_samples=len(dataset),
                                  **(details(result) if details else {}))
    bundle = bundle_from_model(model.cpu(), clip.state_dict, clip=clip.identity, source=source,
                               demo=demo or clip.random)
    return TrainedBundle(result, bundle, len(dataset))
