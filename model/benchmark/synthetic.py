"""A synthetic benchmark in the exact VadCLIP layout, on the real benchmarks' structure (for demos and tests).

Lists, video names, crops, labels, the annotated test intervals and the recorded normal test lengths come
from the real benchmark (:mod:`model.benchmark.index`); the features are synthetic. Snippet features are
``normal centre + video scene offset + temporally smoothed noise`` plus, inside anomalous intervals, a shift
along the interval's class direction (all class directions share a common "anomalous" component), so the
coarse head, the class alignment and the detection mAP all have something real to learn. Lengths unknown in
the real data (training videos; anomalous test videos, whose intervals bound them from below) are drawn
around the median of the recorded normal test lengths; training videos get synthetic anomalous intervals of
their class(es), recorded in the manifest. ``max_snippets`` shortens longer videos, scaling their intervals.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.benchmark.index import GT_NORMAL_LABEL, BenchmarkIndex, IndexedVideo
from model.benchmark.protocol import LabelEncoder, feature_file_name, write_feature_list
from model.benchmark.testset import BenchmarkFiles, frame_gt_from_annotations
from model.config import DSANetConfig

FRAMES = 16
FEATURE_SCALE = 0.45  # per-dimension spread of real CLIP ViT-B/16 image embeddings, roughly
SYNTHETIC_NOTE = "SYNTHETIC features: made by `vad synth-features`, not extracted from video. For demos and tests."


@dataclass(frozen=True)
class SynthOptions:
    """What to generate: ``scale`` keeps that fraction of each class's videos (at least one); ``signal`` is
    the anomaly shift in units of the per-direction noise; ``max_snippets`` caps sequence lengths."""

    scale: float = 1.0
    max_snippets: int | None = None
    width: int = 512
    seed: int = 0
    signal: float = 4.0


Intervals = tuple[tuple[int, int, str], ...]


@dataclass(frozen=True)
class SynthVideo:
    """A video to write: its position in the real list, index entry, snippet count and ``(start, end, label)``
    frame intervals. Its random draws depend on ``(seed, split, position)`` only, so a subset (``scale``)
    holds exactly the videos of the full set."""

    position: int
    video: IndexedVideo
    snippets: int
    intervals: Intervals


def select(videos: Sequence[IndexedVideo], scale: float, group: Callable[[str], str], seed: int) -> list[int]:
    """Indices (in list order) of ``max(1, round(scale·count))`` random videos of each group of labels."""
    rng = np.random.default_rng([seed, 7])
    by_group: dict[str, list[int]] = {}
    for i, video in enumerate(videos):
        by_group.setdefault(group(video.label), []).append(i)
    kept: list[int] = []
    for members in by_group.values():
        count = min(len(members), max(1, round(scale * len(members))))
        kept.extend(rng.choice(members, size=count, replace=False).tolist())
    return sorted(kept)


def _fit(snippets: int, intervals: Intervals, cap: int | None) -> tuple[int, Intervals]:
    """Cap the length at ``cap`` snippets, scaling the intervals by the same factor."""
    if cap is None or snippets <= cap:
        return snippets, intervals
    f = cap / snippets
    scaled = tuple((math.floor(s * f), max(math.floor(s * f) + 1, math.ceil(e * f)), c) for s, e, c in intervals)
    return cap, scaled


def plan_video(position: int, video: IndexedVideo, encoder: LabelEncoder, median: float, opts: SynthOptions,
               rng: np.random.Generator) -> SynthVideo:
    """Length and intervals of one video (real where the benchmark has them, drawn otherwise)."""
    intervals: Intervals
    if video.snippets is not None:
        snippets, intervals = video.snippets, video.intervals
    elif video.intervals:
        least = math.ceil(max(e for _, e, _ in video.intervals) / FRAMES)
        snippets, intervals = least + 1 + int(rng.integers(0, max(2, least // 3))), video.intervals
    else:
        snippets = int(np.clip(round(median * math.exp(0.8 * rng.standard_normal())), 8, 4000))
        codes = [] if encoder.is_normal(video.label) else encoder.codes(video.label)
        count = max(len(codes), int(rng.integers(1, 3))) if codes else 0
        intervals = tuple(_random_interval(snippets, codes[i % len(codes)], rng) for i in range(count))
    snippets, intervals = _fit(snippets, intervals, opts.max_snippets)
    return SynthVideo(position, video, snippets, intervals)


def _random_interval(snippets: int, label: str, rng: np.random.Generator) -> tuple[int, int, str]:
    length = max(1, round(snippets * rng.uniform(0.1, 0.4)))
    start = int(rng.integers(0, snippets - length + 1))
    return FRAMES * start, FRAMES * (start + length), label


class Palette:
    """The feature distribution: normal centre, class directions, noise levels (seeded)."""

    def __init__(self, cfg: DSANetConfig, opts: SynthOptions) -> None:
        rng = np.random.default_rng([opts.seed, 1])
        width = opts.width
        self.centre = rng.standard_normal(width)
        shared = _unit(rng.standard_normal(width))
        self.directions = {spec.label: _unit(0.6 * shared + 0.8 * _unit(rng.standard_normal(width)))
                           for spec in cfg.classes[1:]}
        self.signal, self.width = opts.signal, width

    def features(self, plan: SynthVideo, crops: int, rng: np.random.Generator) -> np.ndarray:
        """``[crops, n, D]`` float32 for one video."""
        n = plan.snippets
        base = self.centre + 0.5 * rng.standard_normal(self.width) + _smooth_noise(rng, n, self.width)
        frames = np.arange(n)[:, None] * FRAMES + np.arange(FRAMES)[None, :]  # [n, 16]
        for start, end, label in plan.intervals:
            share = ((frames >= start) & (frames < end)).mean(axis=1)  # fraction of each snippet inside
            base = base + self.signal * share[:, None] * self.directions[label][None, :]
        crop_noise = 0.3 * rng.standard_normal((crops, n, self.width))
        return (FEATURE_SCALE * (base[None] + crop_noise)).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


def _smooth_noise(rng: np.random.Generator, n: int, width: int, window: int = 5) -> np.ndarray:
    """Unit-variance noise, moving-averaged over ``window`` snippets (temporally correlated like video)."""
    white = rng.standard_normal((n + window - 1, width))
    cumulative = np.cumsum(np.vstack([np.zeros((1, width)), white]), axis=0)
    return (cumulative[window:] - cumulative[:-window]) / math.sqrt(window)


def plan_benchmark(index: BenchmarkIndex, cfg: DSANetConfig, opts: SynthOptions) -> tuple[list[SynthVideo], ...]:
    """The training and test videos to write, in list order."""
    encoder = LabelEncoder(cfg)
    median = float(np.median([v.snippets for v in index.test if v.snippets] or [128]))
    plans = []
    for split, videos in enumerate((index.train, index.test)):
        chosen = select(videos, opts.scale, lambda label: encoder.codes(label)[0], opts.seed + split)
        plans.append([plan_video(i, videos[i], encoder, median, opts, np.random.default_rng([opts.seed, split, i]))
                      for i in chosen])
    return plans[0], plans[1]


def _object_array(items: list[list[Any]]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array


def _annotation_lines(test: Sequence[SynthVideo], fmt: str, encoder: LabelEncoder) -> list[str]:
    """The annotation text in the official layout (UCF: all videos, ``-1`` padding; XD: anomalous only)."""
    lines = []
    for plan in test:
        frames = [str(x) for s, e, _ in plan.intervals for x in (s, e)]
        if fmt == "ucf":
            frames += ["-1"] * max(0, 4 - len(frames))
            lines.append("  ".join([plan.video.name, plan.video.label, *frames]) + "  ")
        elif not encoder.is_normal(plan.video.label):
            lines.append(" ".join([plan.video.name, *frames]))
    return lines


def write_ground_truth(list_dir: Path, cfg: DSANetConfig, test: Sequence[SynthVideo]) -> None:
    """Annotation text, ``gt_segment``/``gt_label`` object arrays and the frame ground truth of the test list."""
    training, encoder = cfg.training, LabelEncoder(cfg)
    segments = [[[0, FRAMES * p.snippets]] if not p.intervals else [[str(s), str(e)] for s, e, _ in p.intervals]
                for p in test]
    labels = [[GT_NORMAL_LABEL] if not p.intervals else [c for _, _, c in p.intervals] for p in test]
    np.save(list_dir / training.gt_segment_file, _object_array(segments), allow_pickle=True)
    np.save(list_dir / training.gt_label_file, _object_array(labels), allow_pickle=True)
    (list_dir / training.annotation_file).write_text("\n".join(_annotation_lines(test, training.annotation_format,
                                                                                 encoder)) + "\n")
    if training.annotation_format == "xd":
        multi = [" ".join([p.video.name, *(f"{c} {s} {e}" for s, e, c in p.intervals)]) for p in test if p.intervals]
        (list_dir / "annotations_multiclasses.txt").write_text("\n".join(multi) + "\n")
    files = BenchmarkFiles(cfg, list_dir, list_dir.parent)
    entries = files.read_list(files.test_list)
    np.save(list_dir / training.gt_file, frame_gt_from_annotations(files, entries, [p.snippets for p in test]))


def write_synthetic_benchmark(
    out_dir: str | Path, cfg: DSANetConfig, index: BenchmarkIndex, opts: SynthOptions,
    progress: Callable[[Iterable[SynthVideo]], Iterable[SynthVideo]] = lambda x: x,
) -> dict[str, Any]:
    """Write the whole dataset under ``out_dir`` (features at ``out_dir/<stem>__<crop>.npy``, lists in ``list/``).

    Returns:
        The manifest, also written to ``out_dir/manifest.json`` (with a ``README.txt``).
    """
    out_dir, training = Path(out_dir), cfg.training
    train, test = plan_benchmark(index, cfg, opts)
    list_dir = out_dir / "list"
    list_dir.mkdir(parents=True, exist_ok=True)
    prefix = training.list_prefix.rstrip("/") + "/"
    train_rows = ((prefix + feature_file_name(p.video.stem, k), p.video.label) for p in train for k in p.video.crops)
    write_feature_list(list_dir / training.train_list, train_rows)
    write_feature_list(list_dir / training.test_list,
                       ((prefix + feature_file_name(p.video.stem, p.video.crops[0]), p.video.label) for p in test))
    palette = Palette(cfg, opts)
    for split, plans in enumerate((train, test)):
        for plan in progress(plans):
            rng = np.random.default_rng([opts.seed, 10 + split, plan.position])
            crops = palette.features(plan, len(plan.video.crops), rng)
            (out_dir / plan.video.stem).parent.mkdir(parents=True, exist_ok=True)
            for k, array in zip(plan.video.crops, crops, strict=True):
                np.save(out_dir / feature_file_name(plan.video.stem, k), array)
    write_ground_truth(list_dir, cfg, test)
    return _write_manifest(out_dir, cfg, opts, train, test)


def is_synthetic_dataset(root: str | Path) -> bool:
    """Whether ``root`` holds a benchmark written by :func:`write_synthetic_benchmark` (its manifest says so)."""
    manifest = Path(root) / "manifest.json"
    return manifest.is_file() and bool(json.loads(manifest.read_text()).get("synthetic"))


def _write_manifest(out_dir: Path, cfg: DSANetConfig, opts: SynthOptions, train: Sequence[SynthVideo],
                    test: Sequence[SynthVideo]) -> dict[str, Any]:
    manifest = {
        "synthetic": True, "note": SYNTHETIC_NOTE, "preset": cfg.name, "dataset": cfg.dataset,
        "options": asdict(opts), "train_videos": len(train), "train_files": sum(len(p.video.crops) for p in train),
        "test_videos": len(test), "test_anomalous": sum(bool(p.intervals) for p in test),
        "train_intervals": {p.video.name: [list(i) for i in p.intervals] for p in train if p.intervals},
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (out_dir / "README.txt").write_text(
        f"{SYNTHETIC_NOTE}\n\nVadCLIP layout of {cfg.dataset or cfg.name}: lists, ground truth and annotations in "
        f"list/, features under the list paths with the prefix {cfg.training.list_prefix!r} replaced by this "
        f"directory. Use it with --features-root {out_dir}. Options: {json.dumps(asdict(opts))}.\n")
    return manifest
