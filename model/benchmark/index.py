"""The structure of the real benchmarks (video names, list labels, crops, annotated intervals) as a small index.

The synthetic benchmark (:mod:`model.benchmark.synthetic`) is built on it, so that its lists, names and intervals are
the real ones. :func:`read_benchmark_index` extracts it from the official files (VadCLIP's ``list/`` folder:
the list CSVs and the ``gt_segment*``/``gt_label*`` arrays); a copy for each preset ships in
``model/benchmark/data/<preset>.json.gz`` (regenerate with ``scripts/build_benchmark_index.py``).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from model.benchmark.groundtruth import load_gt_segments
from model.benchmark.protocol import SNIPPET_FRAMES, read_feature_list
from model.config import DSANetConfig
from model.exceptions import DataError

GT_NORMAL_LABEL = "A"
"""Label of the whole-video interval ``[0, 16·n]`` that the segment files give normal test videos."""

@dataclass(frozen=True)
class IndexedVideo:
    """One video of a list.

    Attributes:
        stem: Its list path without the list prefix and the ``__<crop>.npy`` suffix
            (e.g. ``UCFClipFeatures/Abuse/Abuse001_x264``).
        label: Its list label.
        crops: The crop indices the list has rows for.
        snippets: Its snippet count when the benchmark records it (normal test videos), else ``None``.
        intervals: Annotated ``(start, end, label)`` frame intervals (anomalous test videos).
    """

    stem: str
    label: str
    crops: tuple[int, ...]
    snippets: int | None = None
    intervals: tuple[tuple[int, int, str], ...] = ()

    @property
    def name(self) -> str:
        return self.stem.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class BenchmarkIndex:
    """Training and test videos of a benchmark, in list order."""

    preset: str
    train: tuple[IndexedVideo, ...]
    test: tuple[IndexedVideo, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkIndex:
        def video(v: dict[str, Any]) -> IndexedVideo:
            return IndexedVideo(v["stem"], v["label"], tuple(v["crops"]), v["snippets"],
                                tuple((int(s), int(e), str(label)) for s, e, label in v["intervals"]))

        return cls(data["preset"], tuple(map(video, data["train"])), tuple(map(video, data["test"])))


def _list_rows(path: Path, prefix: str) -> list[tuple[str, int, str]]:
    """``(stem, crop, label)`` of every row of a list CSV whose paths are ``<prefix><dir>/<video>__<crop>.npy``."""
    if not path.is_file():
        raise DataError(f"benchmark list not found: {path}")
    rows = []
    for entry in read_feature_list(path, features_root="", list_prefix=prefix):
        stem = entry.path.with_name(entry.video).as_posix()
        rows.append((stem, entry.crop, entry.label))
    return rows


def _group(rows: list[tuple[str, int, str]]) -> list[IndexedVideo]:
    """Consecutive rows of one video → one entry (the lists keep a video's crops together)."""
    videos: list[IndexedVideo] = []
    for stem, crop, label in rows:
        if videos and videos[-1].stem == stem:
            last = videos[-1]
            videos[-1] = IndexedVideo(stem, label, (*last.crops, crop))
        else:
            videos.append(IndexedVideo(stem, label, (crop,)))
    return videos


def read_benchmark_index(bench_dir: str | Path, cfg: DSANetConfig) -> BenchmarkIndex:
    """Extract the index from the official list and segment files in ``bench_dir`` (file names from ``cfg``)."""
    bench_dir, training = Path(bench_dir), cfg.training
    prefix = training.list_prefix.rstrip("/") + "/"
    train = _group(_list_rows(bench_dir / training.train_list, prefix))
    test_rows = _list_rows(bench_dir / training.test_list, prefix)
    gt = load_gt_segments(bench_dir / training.gt_segment_file, bench_dir / training.gt_label_file)
    if len(gt.segments) != len(test_rows):
        raise DataError(f"{training.gt_segment_file} has {len(gt.segments)} videos, {training.test_list} "
                        f"{len(test_rows)}")
    test = []
    for (stem, crop, label), intervals, labels in zip(test_rows, gt.segments, gt.labels, strict=True):
        if labels == [GT_NORMAL_LABEL]:
            test.append(IndexedVideo(stem, label, (crop,), snippets=intervals[0][1] // SNIPPET_FRAMES))
        else:
            annotated = tuple((s, e, lab) for (s, e), lab in zip(intervals, labels, strict=True))
            test.append(IndexedVideo(stem, label, (crop,), intervals=annotated))
    return BenchmarkIndex(cfg.name, tuple(train), tuple(test))


def write_index(index: BenchmarkIndex, path: str | Path) -> None:
    """Write gzip-compressed JSON (deterministic bytes: no timestamp in the gzip header)."""
    data = json.dumps(index.to_dict(), separators=(",", ":")).encode()
    Path(path).write_bytes(gzip.compress(data, mtime=0))


def packaged_index(preset: str) -> BenchmarkIndex:
    """The shipped index of ``"ucf"`` or ``"xd"``."""
    resource = resources.files("model.benchmark").joinpath("data", f"{preset}.json.gz")
    if not resource.is_file():
        raise DataError(f"no packaged benchmark index for {preset!r} (there are 'ucf' and 'xd'); build one from "
                        "the official list files with read_benchmark_index, or pass --benchmarks DIR.")
    return BenchmarkIndex.from_dict(json.loads(gzip.decompress(resource.read_bytes())))
