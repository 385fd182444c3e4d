"""Benchmark ground truth: annotation parsers, test lists and the frame-level label vector (spec A.2, A.5).

UCF-Crime and XD-Violence differ only in the layout of their annotation text, which is a parameter of one
parser (how many fields precede the frame numbers, which value means "no interval"). Frame numbers are native
video frames; one feature snippet covers ``snippet_frames`` (16) consecutive frames.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.benchmark.protocol import SNIPPET_FRAMES, read_feature_list
from model.exceptions import DataError, EvaluationError

Interval = tuple[int, int]
"""A ``[start, end)`` frame interval (end exclusive)."""



@dataclass(frozen=True)
class VideoEntry:
    """One row of a test list CSV: the video name (no directory, no crop suffix) and its label string."""

    name: str
    label: str


@dataclass(frozen=True)
class SegmentGroundTruth:
    """Localisation ground truth of a test list (``gt_segment*.npy`` + ``gt_label*.npy``), one entry per video."""

    segments: list[list[Interval]]
    labels: list[list[str]]


def parse_ucf_temporal_annotations(path: str | Path) -> dict[str, list[Interval]]:
    """Parse UCF-Crime's ``Temporal_Anomaly_Annotation.txt``.

    Lines are ``<video>  <Class>  <s1>  <e1>  <s2>  <e2>``; ``-1`` marks an absent interval, so normal videos
    map to an empty list.

    Args:
        path: The annotation file.

    Returns:
        ``{video_name: [(start, end), ...]}`` in file order.

    Raises:
        EvaluationError: A line is malformed or a video appears twice.
    """
    return _parse_annotation_file(path, fields_before_frames=2, absent=-1)


def parse_xd_annotations(path: str | Path) -> dict[str, list[Interval]]:
    """Parse XD-Violence's binary ``annotations.txt``.

    Lines are ``<video> s1 e1 [s2 e2 ...]``. A trailing ``.mp4`` on a name (14 lines of the official file) is
    removed; :func:`lookup_intervals` also matches names by substring as VadCLIP does.

    Args:
        path: The annotation file.

    Returns:
        ``{video_name: [(start, end), ...]}`` in file order.

    Raises:
        EvaluationError: A line is malformed or a video appears twice.
    """
    return _parse_annotation_file(path, fields_before_frames=1, absent=None)


def _parse_annotation_file(
    path: str | Path, fields_before_frames: int, absent: int | None
) -> dict[str, list[Interval]]:
    result: dict[str, list[Interval]] = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{lineno}"
        frames = fields[fields_before_frames:]
        if len(fields) < fields_before_frames + 2 or len(frames) % 2:
            raise EvaluationError(
                f"{where}: expected {fields_before_frames} leading field(s) then start/end frame pairs, got {line!r}; "
                "is this the right annotation file for the dataset?"
            )
        name = fields[0].removesuffix(".mp4")
        if name in result:
            raise EvaluationError(f"{where}: video {name!r} is annotated twice; keep one line per video.")
        result[name] = _frame_pairs(frames, absent, where)
    return result


def _frame_pairs(tokens: Sequence[str], absent: int | None, where: str) -> list[Interval]:
    try:
        numbers = [int(token) for token in tokens]
    except ValueError as err:
        raise EvaluationError(f"{where}: frame numbers must be integers ({err}).") from err
    pairs: list[Interval] = []
    for start, end in zip(numbers[::2], numbers[1::2], strict=True):
        if absent is not None and absent in (start, end):
            if (start, end) != (absent, absent):
                raise EvaluationError(f"{where}: interval ({start}, {end}) is half absent; use {absent} for both.")
            continue
        if start < 0 or end <= start:
            raise EvaluationError(f"{where}: interval ({start}, {end}) needs 0 <= start < end.")
        pairs.append((start, end))
    return pairs


def lookup_intervals(name: str, annotations: Mapping[str, list[Interval]]) -> list[Interval]:
    """Find a video's intervals: exact name first, else the one annotation name that contains it (VadCLIP).

    Args:
        name: Video name as in the test list (no directory, no crop suffix).
        annotations: Output of one of the parsers.

    Returns:
        The video's ``(start, end)`` intervals.

    Raises:
        EvaluationError: No annotation name, or more than one, contains ``name``.
    """
    if name in annotations:
        return list(annotations[name])
    matches = [key for key in annotations if name in key]
    if len(matches) == 1:
        return list(annotations[matches[0]])
    if not matches:
        raise EvaluationError(
            f"video {name!r} has no annotation; check that the annotation file belongs to this test list, "
            "and pass normal videos (which XD-Violence does not annotate) as normal_videos."
        )
    raise EvaluationError(f"video {name!r} matches several annotations ({matches[:3]}); rename or use exact names.")


def build_frame_gt(
    video_names: Sequence[str],
    snippet_counts: Sequence[int],
    intervals: Mapping[str, list[Interval]],
    snippet_frames: int = SNIPPET_FRAMES,
    normal_videos: Collection[str] = (),
) -> np.ndarray:
    """Build the frame-level 0/1 ground truth of a test list (``gt_ucf.npy`` / ``gt.npy``, spec A.5).

    Per video, in the given order: ``snippet_frames * (n + 1)`` zeros, ``[s, e)`` of each interval set to 1,
    the last ``snippet_frames`` entries dropped, so frames at or beyond ``snippet_frames * n`` are lost.

    Args:
        video_names: Test videos in test-list order.
        snippet_counts: Number of feature snippets ``n`` of each video.
        intervals: ``{video_name: [(start, end), ...]}``, e.g. from a parser; looked up with
            :func:`lookup_intervals`.
        snippet_frames: Frames per snippet.
        normal_videos: Names that are all zeros without an annotation (XD-Violence does not list them).

    Returns:
        float32 array of length ``snippet_frames * sum(snippet_counts)``.

    Raises:
        EvaluationError: Lengths differ, a count is negative or a video is not annotated.
    """
    if len(video_names) != len(snippet_counts):
        raise EvaluationError(
            f"got {len(video_names)} video names but {len(snippet_counts)} snippet counts; pass one count per video."
        )
    if snippet_frames < 1:
        raise EvaluationError(f"snippet_frames must be >= 1, got {snippet_frames}.")
    normal = set(normal_videos)
    parts = []
    for name, count in zip(video_names, snippet_counts, strict=True):
        if int(count) < 0:
            raise EvaluationError(f"video {name!r} has a negative snippet count {count}.")
        segments = [] if name in normal else lookup_intervals(name, intervals)
        parts.append(_video_frame_gt(int(count), segments, snippet_frames))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _video_frame_gt(count: int, segments: Sequence[Interval], snippet_frames: int) -> np.ndarray:
    labels = np.zeros(snippet_frames * (count + 1), dtype=np.float32)
    for start, end in segments:
        if start < 0:
            raise EvaluationError(f"interval ({start}, {end}) starts before frame 0.")
        labels[start:end] = 1.0
    return labels[:-snippet_frames]


def read_test_list(path: str | Path) -> list[VideoEntry]:
    """Read a test list CSV (header ``path,label``, one ``<video>__<crop>.npy`` row per video), in order.

    Args:
        path: E.g. ``ucf_CLIP_rgbtest.csv``.

    Returns:
        The videos, names stripped of directory and ``__<crop>.npy``.

    Raises:
        EvaluationError: The header or a path does not have the expected form.
    """
    try:
        return [VideoEntry(name=entry.video, label=entry.label) for entry in read_feature_list(path)]
    except DataError as exc:
        raise EvaluationError(str(exc)) from exc


def load_gt_segments(segment_path: str | Path, label_path: str | Path) -> SegmentGroundTruth:
    """Load ``gt_segment*.npy`` and ``gt_label*.npy`` into plain Python lists with int bounds.

    The files are pickled object arrays, so this unpickles them: load only the official benchmark files.

    Args:
        segment_path: ``gt_segment_ucf.npy`` or ``gt_segment.npy``.
        label_path: The matching ``gt_label*.npy``.

    Returns:
        Per video, its ``(start, end)`` intervals and one label per interval.

    Raises:
        EvaluationError: The two files disagree in length or an entry is malformed.
    """
    raw_segments = np.load(segment_path, allow_pickle=True)
    raw_labels = np.load(label_path, allow_pickle=True)
    if len(raw_segments) != len(raw_labels):
        raise EvaluationError(
            f"{segment_path} has {len(raw_segments)} videos but {label_path} has {len(raw_labels)}; "
            "use the segment and label files of the same dataset."
        )
    segments, labels = [], []
    for index, (video_segments, video_labels) in enumerate(zip(raw_segments, raw_labels, strict=True)):
        segments.append(_int_intervals(video_segments, f"{segment_path}[{index}]"))
        labels.append([str(label) for label in video_labels])
        if len(segments[-1]) != len(labels[-1]):
            raise EvaluationError(
                f"video {index}: {len(segments[-1])} intervals but {len(labels[-1])} labels; the files do not match."
            )
    return SegmentGroundTruth(segments=segments, labels=labels)


def _int_intervals(raw: Any, where: str) -> list[Interval]:
    try:
        return [(int(start), int(end)) for start, end in raw]
    except (TypeError, ValueError) as err:
        raise EvaluationError(f"{where}: expected a list of [start, end] pairs, got {raw!r} ({err}).") from err
