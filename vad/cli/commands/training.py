"""Training and evaluation commands: train, eval, make-gt, synth-features (VadCLIP-format features)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vad.cli.app import Precision, app, fail, offline_hub

if TYPE_CHECKING:
    from model.benchmark.testset import BenchmarkFiles
    from model.config import DSANetConfig

PresetOption = Annotated[str, typer.Option("--preset", "-p", help="ucf, xd, or a preset JSON file.")]
ListDirOption = Annotated[Path | None, typer.Option(
    "--list-dir", help="Folder with the lists, annotations and ground truth (VadCLIP's list/); "
                       "default FEATURES_ROOT/list.")]
PrefixOption = Annotated[str | None, typer.Option(
    "--list-prefix", help="Directory prefix of the list paths that --features-root replaces (default: the preset's).")]
TestListOption = Annotated[Path | None, typer.Option(
    "--test-list", help="Test list CSV instead of the preset's file in the list folder.")]


class Amp(StrEnum):
    off = "off"
    bf16 = "bf16"
    fp16 = "fp16"


def _config(preset: str, list_prefix: str | None = None, **training: Any) -> DSANetConfig:
    """The preset with the command's overrides of its training section (list paths made absolute).

    Every command that takes ``--preset`` reads it here, so an unknown or malformed preset is one error line.
    """
    import dataclasses

    from model.config import load_preset
    from model.exceptions import ConfigError

    try:
        cfg = load_preset(preset)
    except ConfigError as exc:
        raise fail(str(exc)) from exc
    changes: dict[str, Any] = {k: str(v.resolve()) if isinstance(v, Path) else v
                               for k, v in training.items() if v is not None}
    if list_prefix is not None:
        changes["list_prefix"] = list_prefix
    return cfg.replace(training=dataclasses.replace(cfg.training, **changes)) if changes else cfg


def _files(cfg: DSANetConfig, features_root: Path | None, list_dir: Path | None) -> BenchmarkFiles:
    from model.benchmark.testset import BenchmarkFiles

    folder = list_dir if list_dir is not None else (features_root / "list" if features_root else None)
    if folder is None or not folder.is_dir():
        raise fail(f"list folder not found ({folder}); pass --list-dir with the lists, annotations and ground "
                   "truth of the benchmark (VadCLIP's list/ folder, or the list/ of `vad synth-features`).")
    return BenchmarkFiles(cfg, folder, features_root)


@app.command("make-gt")
def make_gt(
    preset: PresetOption,
    output: Annotated[Path, typer.Option("--output", "-o", help="Frame ground truth to write (.npy).")],
    features_root: Annotated[Path | None, typer.Option(
        help="Root of the feature files (replaces the lists' prefix): snippet counts from the features.")] = None,
    predictions: Annotated[Path | None, typer.Option(
        help="Folder of saved predictions (as for `vad eval --predictions`): snippet counts from their lengths, "
             "no feature files needed. Needs --list-dir.")] = None,
    list_dir: ListDirOption = None,
    list_prefix: PrefixOption = None,
    test_list: TestListOption = None,
    force: Annotated[bool, typer.Option("--force", help="Write even if normal videos disagree with gt_segment.")
                     ] = False,
) -> None:
    """Build the frame-level ground truth (gt_ucf.npy / gt.npy) from the annotations and the feature lengths
    (or the lengths of saved predictions)."""
    import numpy as np

    from model.benchmark.evaluation import build_frame_truth
    from model.exceptions import ModelError

    if (features_root is None) == (predictions is None):
        raise fail("pass --features-root (snippet counts of the feature files) or --predictions (lengths of saved "
                   "predictions, no feature files needed): one of them.")
    cfg = _config(preset, list_prefix, test_list=test_list)
    files = _files(cfg, features_root, list_dir)
    try:
        truth = build_frame_truth(files, predictions)
    except ModelError as exc:
        raise fail(str(exc)) from exc
    if truth.problems and not force:
        made_from = "predictions made from " if predictions is not None else ""
        raise fail(f"{len(truth.problems)} normal test videos disagree with {files.gt_segments.name} (are these "
                   f"{made_from}the features of the official extraction and crop {cfg.training.test_crop}?): "
                   + "; ".join(truth.problems[:5]) + ". Pass --force to write anyway.")
    frame_gt = truth.frame_gt
    output.parent.mkdir(parents=True, exist_ok=True)
    np.save(output, frame_gt)
    typer.echo(f"wrote {output}: {truth.videos} videos, {truth.snippets} snippets, {len(frame_gt)} frames, "
               f"{int(frame_gt.sum())} anomalous ({100 * frame_gt.mean():.2f}%)")


@app.command("synth-features")
def synth_features(
    preset: PresetOption,
    output: Annotated[Path, typer.Option("--output", "-o", help="Dataset folder to create.")],
    scale: Annotated[float, typer.Option(help="Fraction of each class's videos to keep (at least one).")] = 1.0,
    max_snippets: Annotated[int | None, typer.Option(help="Shorten longer videos to this many snippets.")] = None,
    width: Annotated[int, typer.Option(help="Feature width (512 for the real model).")] = 512,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    signal: Annotated[float, typer.Option(help="Anomaly shift in noise units: lower is harder.")] = 4.0,
    benchmarks: Annotated[Path | None, typer.Option(
        help="Read names and intervals from these official list files instead of the packaged index.")] = None,
) -> None:
    """Write a synthetic benchmark in the VadCLIP layout, on the real benchmark's videos, classes and intervals."""
    from tqdm import tqdm

    from model.benchmark.index import packaged_index, read_benchmark_index
    from model.benchmark.synthetic import SynthOptions, write_synthetic_benchmark
    from model.exceptions import ModelError

    cfg = _config(preset)
    if (output / "list").exists():
        raise fail(f"{output} already holds a dataset (list/); choose a new folder.")
    if not 0 < scale <= 1:
        raise fail(f"--scale must be in (0, 1], got {scale}")
    try:
        index = read_benchmark_index(benchmarks, cfg) if benchmarks else packaged_index(cfg.name)
        manifest = write_synthetic_benchmark(
            output, cfg, index, SynthOptions(scale, max_snippets, width, seed, signal),
            progress=lambda items: tqdm(items, desc="videos", file=sys.stderr, leave=False))
    except (ModelError, OSError) as exc:
        raise fail(str(exc)) from exc
    size = sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
    typer.echo(f"wrote SYNTHETIC {cfg.dataset or cfg.name} features to {output}: {manifest['train_videos']} training "
               f"videos ({manifest['train_files']} files), {manifest['test_videos']} test videos "
               f"({manifest['test_anomalous']} anomalous), {size / 2**20:.1f} MiB")


@app.command("eval")
def evaluate(
    preset: PresetOption,
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", "-b", help="Model bundle (from import-checkpoint or train) to run on --features-root; with "
                               "--predictions optional: it checks the bundle the predictions record.")] = None,
    features_root: Annotated[Path | None, typer.Option(
        help="Root of the feature files (replaces the lists' prefix); not needed with --predictions.")] = None,
    list_dir: ListDirOption = None,
    list_prefix: PrefixOption = None,
    test_list: TestListOption = None,
    predictions: Annotated[Path | None, typer.Option(
        help="Score saved predictions (<video>__<crop>.npz|.json with 'anomaly' [n] and 'class_probs' [n, classes], "
             "as `vad score-features` writes them, or from your own model) instead of running a model.")] = None,
    gt_from_predictions: Annotated[bool, typer.Option(
        "--gt-from-predictions", help="Build the frame ground truth from the annotations and the predictions' "
                                      "lengths (no feature files needed) instead of reading the list folder's gt "
                                      "file.")] = False,
    output: Annotated[Path, typer.Option("--output", "-o", help="Metrics JSON to write.")] = Path("metrics.json"),
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    precision: Annotated[Precision, typer.Option(help="fp32 reproduces the official outputs.")] = Precision.fp32,
) -> None:
    """The official evaluation: frame AUC/AP of σ(logits1) and detection mAP@0.1:0.5 on the test list.

    Scores either a bundle on the test features or saved predictions (the preset then gives the classes).
    Prints a table and writes the metrics as JSON. The frame ground truth is the list folder's gt file, or is
    built from the annotations (as make-gt) when that file is absent or with --gt-from-predictions.
    """
    offline_hub()
    from model.benchmark.evaluation import evaluate_on_benchmark
    from model.exceptions import ModelError

    if predictions is None and (bundle is None or features_root is None):
        raise fail("pass --bundle and --features-root (to run a model on the test features), or --predictions "
                   "(saved scores; the preset gives the classes)")
    if gt_from_predictions and predictions is None:
        raise fail("--gt-from-predictions builds the ground truth from the lengths of saved predictions: "
                   "pass --predictions")
    cfg = _config(preset, list_prefix, test_list=test_list)
    list_folder = _files(cfg, features_root, list_dir).list_dir
    try:
        evaluation = evaluate_on_benchmark(
            cfg, list_folder, features_root, bundle=bundle, predictions=predictions,
            gt_from_predictions=gt_from_predictions, device=device, precision=precision.value,
            gt_remedy=lambda frame_gt: _gt_remedy(preset, predictions, frame_gt))
    except ModelError as exc:
        raise fail(str(exc)) from exc
    doc = evaluation.record
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(doc, indent=2))
    label = "  [SYNTHETIC DEMO MODEL]" if doc["demo"] else ""
    typer.echo(f"{cfg.dataset or cfg.name}, {evaluation.metrics.videos} test videos{label}\n"
               f"{evaluation.metrics.table()}\nwrote {output}")


def _gt_remedy(preset: str, predictions: Path | None, frame_gt: Path) -> str:
    """What to do when the frame ground truth does not fit the snippet counts."""
    if predictions is None:
        return "rebuild it with `vad make-gt` for these features"
    return (f"rebuild it from the annotations and the predictions' lengths, which needs no feature files: add "
            f"--gt-from-predictions, or write it once with `vad make-gt --preset {preset} --predictions "
            f"{predictions} --list-dir {frame_gt.parent} -o {frame_gt}`")


def _clip_source(cfg: DSANetConfig, clip_weights: Path | None, init_bundle: Path | None, random_clip: bool) -> Any:
    """The CLIP text weights of a training run: exactly one of the three sources."""
    from model.bundle import load_bundle
    from model.train import clip_source as sources

    if sum((clip_weights is not None, init_bundle is not None, random_clip)) != 1:
        raise fail(f"training recomputes the class text features with CLIP's text tower, so it needs its weights: "
                   f"{sources.HOW_TO_GET_CLIP} (exactly one of the three).")
    if clip_weights is not None:
        return sources.clip_from_file(clip_weights, cfg)
    if init_bundle is not None:
        return sources.clip_from_bundle(load_bundle(init_bundle))
    return sources.random_clip(cfg, cfg.training.seed)


@app.command("train")
def train(
    preset: PresetOption,
    features_root: Annotated[Path, typer.Option(help="Root of the feature files (replaces the lists' prefix).")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Bundle to write (default RUN_DIR/model.safetensors).")] = None,
    run_dir: Annotated[Path | None, typer.Option(
        help="Checkpoints and the loss log train_log.jsonl (default runs/PRESET).")] = None,
    list_dir: ListDirOption = None,
    list_prefix: PrefixOption = None,
    train_list: Annotated[Path | None, typer.Option(
        help="Training list CSV (e.g. the list.csv of `vad extract`) instead of the preset's file.")] = None,
    test_list: TestListOption = None,
    clip_weights: Annotated[Path | None, typer.Option(help="CLIP state dict file (OpenAI names).")] = None,
    init_bundle: Annotated[Path | None, typer.Option(help="Take CLIP from this bundle (import-checkpoint).")] = None,
    finetune: Annotated[bool, typer.Option("--finetune", help="Also start from --init-bundle's DSANet weights.")
                        ] = False,
    random_clip: Annotated[bool, typer.Option("--random-clip", help="Random CLIP text tower: synthetic demos only.")
                           ] = False,
    epochs: Annotated[int | None, typer.Option(help="Override the preset's max_epoch.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Override the preset's batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Override the preset's learning rate.")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Evaluate every N iterations (0: at epoch ends).")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the preset's seed.")] = None,
    reset_to_best: Annotated[bool | None, typer.Option(
        "--reset-to-best/--no-reset-to-best", help="Reset to the best weights at each epoch end (preset: on).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    amp: Annotated[Amp, typer.Option(help="CUDA autocast of the forward; effect on results unmeasured.")] = Amp.off,
    workers: Annotated[int, typer.Option(help="Data loading processes.")] = 2,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from RUN_DIR/checkpoint.pt.")] = False,
    checkpoint_every: Annotated[int, typer.Option(help="Also checkpoint every N iterations.")] = 0,
    stop_after: Annotated[int | None, typer.Option(help="Stop after N iterations in total (resume later).")] = None,
    eval_map: Annotated[bool, typer.Option(help="Compute the detection mAP at each evaluation.")] = True,
    progress: Annotated[bool, typer.Option(help="Progress bars on stderr.")] = True,
) -> None:
    """Train DSANet on VadCLIP-format features with the official protocol of the preset (spec D)."""
    offline_hub()
    from model.benchmark.synthetic import is_synthetic_dataset
    from model.benchmark.testset import load_test_set
    from model.bundle import load_bundle, save_bundle
    from model.exceptions import ModelError
    from model.train.run import TrainingPlan, train_bundle
    from model.train.trainer import CHECKPOINT_NAME, TrainConfig

    cfg = _config(preset, list_prefix, max_epoch=epochs, batch_size=batch_size, lr=lr, eval_every=eval_every,
                  seed=seed, reset_to_best=reset_to_best, train_list=train_list, test_list=test_list)
    run_dir = run_dir or Path("runs") / cfg.name
    if (run_dir / CHECKPOINT_NAME).exists() and not resume:
        raise fail(f"{run_dir} holds a training checkpoint: pass --resume to continue it, or another --run-dir")
    if finetune and init_bundle is None:
        raise fail("--finetune starts from --init-bundle's weights: pass --init-bundle")
    files = _files(cfg, features_root, list_dir)

    def announce(plan: TrainingPlan) -> None:
        typer.echo(f"training {cfg.dataset or cfg.name}: {plan.samples} samples ({plan.normal} normal), "
                   f"{plan.iterations} iterations x {plan.epochs} epochs, {plan.test_videos} test "
                   f"videos, selection by {cfg.training.select_metric.upper()}, on {device}", err=True)
        if cfg.training.eval_every > 0 and plan.iterations <= cfg.training.eval_every:
            typer.echo(f"note: an epoch has {plan.iterations} iterations, so --eval-every "
                       f"{cfg.training.eval_every} never evaluates within one; the model is then evaluated once at "
                       "the end and never reset to a best. Lower --eval-every.", err=True)

    try:
        clip = _clip_source(cfg, clip_weights, init_bundle, random_clip)
        init = load_bundle(init_bundle) if finetune and init_bundle is not None else None
        synthetic = is_synthetic_dataset(features_root)
        run = TrainConfig(run_dir, device, amp.value, None, checkpoint_every, stop_after, eval_map, workers=workers,
                          progress=progress)
        trained = train_bundle(
            cfg, clip, files.read_list(files.train_list), load_test_set(files), run, keep="best", init=init,
            resume=resume, demo=synthetic, on_start=announce,
            details=lambda _: {"features_root": str(features_root), "synthetic_data": synthetic,
                               "train_list": cfg.training.train_list, "reset_to_best": cfg.training.reset_to_best,
                               "amp": amp.value, "device": device,
                               "finetuned_from": str(init_bundle) if init is not None else None})
        result, bundle = trained.result, trained.bundle
        if bundle is None:
            typer.echo(f"stopped after {result.state.step} iterations; continue with --resume (checkpoint in "
                       f"{run_dir})")
            return
        output = output or run_dir / "model.safetensors"
        sha = save_bundle(bundle, output)
    except ModelError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"wrote {output} (best {result.metric.upper()} {result.best_value:.4f} at {result.state.best_at}, "
               f"weights sha256 {sha[:16]}…)" + ("  [DEMO: synthetic data or random CLIP]" if bundle.demo else ""))
