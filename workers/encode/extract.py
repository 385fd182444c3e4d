"""``vad extract``: CLIP features of a folder of videos in the VadCLIP layout, plus the list CSV for training.

Layout (spec A.1, A.2): for ``VIDEOS_DIR/<sub>/<name>.<ext>`` the features go to
``FEATURES_DIR/<sub>/<name>__<k>.npy``, ``[n, 512]`` float32, one file per view ``k`` of the ten-crop
layout (``__0`` centre … ``__5`` mirrored centre …). ``FEATURES_DIR/list.csv`` has the header
``path,label`` and one row per feature file, its path relative to ``FEATURES_DIR`` (what ``vad train
--features-root FEATURES_DIR`` resolves; the authors' lists carry absolute paths of their machine);
the label is the name of the folder holding the video (UCF-Crime's class folders: ``Abuse``,
``Normal``…) unless one label is given for all; videos directly in ``VIDEOS_DIR`` get its own name, with a
warning (:func:`unlabelled_warning`).

Resumable: a video whose feature files all exist is skipped. Each file is written to a temporary name
and renamed, so an interrupted run leaves no partial file. A video that cannot be decoded is reported
and skipped; the others go on.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.benchmark.protocol import feature_file_name, write_feature_list
from workers.encode.features import FeatureExtractor
from workers.exceptions import DecodeCancelled, WorkerError

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                            ".ts", ".3gp"})
LIST_NAME = "list.csv"

OnVideo = Callable[[Path, str, str | None], None]
"""``on_video(video, status, detail)``: status ``extracted``, ``skipped`` or ``failed`` (detail: the reason)."""


@dataclass(frozen=True)
class VideoJob:
    """One video and where its features go.

    Attributes:
        video: The video file.
        folder: Output folder of its feature files.
        name: File stem (the feature files are ``name__k.npy``).
        label: Its label in the list CSV.
    """

    video: Path
    folder: Path
    name: str
    label: str

    def feature_path(self, view: int) -> Path:
        return self.folder / feature_file_name(self.name, view)

    def done(self, views: Sequence[int]) -> bool:
        return all(self.feature_path(v).is_file() for v in views)


@dataclass
class ExtractReport:
    """What a run did. ``rows`` counts the list CSV's rows (videos finished in this or earlier runs)."""

    list_csv: Path
    extracted: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    rows: int = 0


def find_videos(root: Path) -> list[Path]:
    """Video files under ``root`` (by extension, recursively), sorted by relative path."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def folder_label(videos_dir: Path, video: Path) -> str:
    """The label of ``video`` in the list: the name of its folder (``videos_dir``'s own for a video directly in it,
    as ``vad extract .`` names it)."""
    return (video.parent if video.parent != videos_dir else videos_dir.resolve()).name


def unlabelled_warning(videos_dir: Path, videos: Sequence[Path]) -> str | None:
    """The warning for videos directly in ``videos_dir`` (a flat folder): they get no class folder's name but the
    name of ``videos_dir`` itself, which is rarely a class; ``None`` when every video is in a sub-folder."""
    flat = [video for video in videos if video.parent == videos_dir]
    if not flat:
        return None
    name = folder_label(videos_dir, flat[0])
    return (f"{len(flat)} of {len(videos)} videos lie directly in {videos_dir}, not in a label folder: list.csv "
            f"labels them {name!r} (the folder's name). For training, put them in sub-folders named for their "
            "classes (Normal/, Abuse/...) or pass --label.")


def plan_jobs(videos_dir: Path, out_dir: Path, label: str | None = None) -> list[VideoJob]:
    """One job per video; the relative folder structure is kept under ``out_dir``."""
    jobs = []
    for video in find_videos(videos_dir):
        relative = video.relative_to(videos_dir)
        jobs.append(VideoJob(video=video, folder=out_dir / relative.parent, name=video.stem,
                             label=label if label is not None else folder_label(videos_dir, video)))
    return jobs


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` to a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npy.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def extract_folder(videos_dir: str | Path, out_dir: str | Path, extractor: FeatureExtractor, views: Sequence[int],
                   *, label: str | None = None, on_video: OnVideo | None = None) -> ExtractReport:
    """Extract the features of every video under ``videos_dir`` that is not done yet, then write the list.

    Args:
        videos_dir: Folder searched recursively for videos.
        out_dir: Feature folder (created).
        extractor: The CLIP feature extractor.
        views: Ten-crop views to write (``range(10)`` for the full layout, or the one test view).
        label: Label of every video; by default the name of its folder.
        on_video: Called after each video.

    Raises:
        DecodeCancelled: The extractor was cancelled; finished files stay, the list is not rewritten.
    """
    videos_dir, out_dir = Path(videos_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ExtractReport(list_csv=out_dir / LIST_NAME)
    rows: list[tuple[str, str]] = []
    seen: dict[Path, Path] = {}
    for job in plan_jobs(videos_dir, out_dir, label):
        status, detail = _run_job(job, extractor, views, seen)
        if status == "failed":
            report.failed.append((job.video, detail or ""))
        else:
            (report.extracted if status == "extracted" else report.skipped).append(job.video)
            rows += [(job.feature_path(v).relative_to(out_dir).as_posix(), job.label) for v in views]
        if on_video is not None:
            on_video(job.video, status, detail)
    write_feature_list(report.list_csv, rows)
    report.rows = len(rows)
    return report


def _run_job(job: VideoJob, extractor: FeatureExtractor, views: Sequence[int],
             seen: dict[Path, Path]) -> tuple[str, str | None]:
    target = job.feature_path(views[0])
    if target in seen:
        return "failed", f"its features would overwrite those of {seen[target].name} (same name); rename one"
    seen[target] = job.video
    if job.done(views):
        return "skipped", None
    try:
        feats = extractor.extract(job.video, views)
    except DecodeCancelled:
        raise
    except WorkerError as exc:
        return "failed", str(exc)
    for k, view in enumerate(views):
        save_npy_atomic(job.feature_path(view), np.ascontiguousarray(feats.features[k], dtype=np.float32))
    return "extracted", None
