"""Feature extraction of a folder: VadCLIP layout, list CSV, labels, resumability, bad videos, atomic writes."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import tiny_bundle
from workers.encode.clip_encoder import ClipImageEncoder
from workers.encode.extract import (
    LIST_NAME,
    extract_folder,
    find_videos,
    plan_jobs,
    save_npy_atomic,
    unlabelled_warning,
)
from workers.encode.features import FeatureExtractor
from workers.settings import WorkerSettings
from workers.synthetic import make_video

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    settings = WorkerSettings(device="cpu", batch_size=8)
    return FeatureExtractor(ClipImageEncoder.create(settings, tiny_bundle("ucf", seed=4)), settings)


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    root = tmp_path / "videos"
    for label in ("Abuse", "Normal"):
        (root / label).mkdir(parents=True)
    make_video(root / "Abuse" / "Abuse001_x264.mp4", frames=40, size=(96, 64), seed=1)
    make_video(root / "Normal" / "Normal_7.mkv", frames=17, size=(64, 48), seed=2)
    return root


def read_list(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_ten_crops_in_the_vadclip_layout(extractor: FeatureExtractor, videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "features"
    report = extract_folder(videos, out, extractor, range(10))
    assert len(report.extracted) == 2 and not report.skipped and not report.failed and report.rows == 20
    abuse = [np.load(out / "Abuse" / f"Abuse001_x264__{k}.npy") for k in range(10)]
    assert all(a.shape == (math.ceil(40 / 16), 64) and a.dtype == np.float32 for a in abuse)
    assert np.load(out / "Normal" / "Normal_7__0.npy").shape == (2, 64)  # 17 frames: one full snippet and a tail
    assert not np.allclose(abuse[0], abuse[5]), "the mirrored view differs from the centre"
    rows = read_list(out / LIST_NAME)
    assert [r["path"] for r in rows[:2]] == ["Abuse/Abuse001_x264__0.npy", "Abuse/Abuse001_x264__1.npy"]
    assert {r["label"] for r in rows} == {"Abuse", "Normal"} and all((out / r["path"]).is_file() for r in rows)
    single = extractor.extract(videos / "Abuse" / "Abuse001_x264.mp4", (5,))
    np.testing.assert_allclose(single.features[0], abuse[5], rtol=1e-5, atol=1e-5)


def test_resumable_and_bad_videos_are_skipped(extractor: FeatureExtractor, videos: Path, tmp_path: Path) -> None:
    (videos / "Normal" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    out = tmp_path / "features"
    seen: list[tuple[str, str]] = []
    first = extract_folder(videos, out, extractor, [0], on_video=lambda v, status, _: seen.append((v.name, status)))
    assert [v.name for v, _ in first.failed] == ["broken.mp4"] and "not a video container" in first.failed[0][1]
    assert sorted(seen) == [("Abuse001_x264.mp4", "extracted"), ("Normal_7.mkv", "extracted"), ("broken.mp4", "failed")]
    stamp = (out / "Abuse" / "Abuse001_x264__0.npy").stat().st_mtime_ns
    second = extract_folder(videos, out, extractor, [0])
    assert len(second.skipped) == 2 and not second.extracted and len(second.failed) == 1
    assert (out / "Abuse" / "Abuse001_x264__0.npy").stat().st_mtime_ns == stamp, "finished files are not redone"
    assert len(read_list(out / LIST_NAME)) == 2
    (out / "Normal" / "Normal_7__0.npy").unlink()  # as if killed before this video
    third = extract_folder(videos, out, extractor, [0], label="custom")
    assert [v.name for v in third.extracted] == ["Normal_7.mkv"]
    assert {r["label"] for r in read_list(out / LIST_NAME)} == {"custom"}


def test_same_stem_twice_is_a_reported_failure(extractor: FeatureExtractor, videos: Path, tmp_path: Path) -> None:
    make_video(videos / "Normal" / "Normal_7.mp4", frames=5, size=(64, 48))
    report = extract_folder(videos, tmp_path / "f", extractor, [0])
    assert [v.name for v, _ in report.failed] == ["Normal_7.mp4"] and "same name" in report.failed[0][1]


def test_jobs_and_atomic_writes(videos: Path, tmp_path: Path) -> None:
    jobs = plan_jobs(videos, tmp_path / "out")
    assert [(j.name, j.label, j.folder.name) for j in jobs] == [("Abuse001_x264", "Abuse", "Abuse"),
                                                                 ("Normal_7", "Normal", "Normal")]
    target = tmp_path / "x" / "a__0.npy"
    save_npy_atomic(target, np.ones((2, 3), np.float32))
    assert np.load(target).shape == (2, 3) and [p.name for p in target.parent.iterdir()] == ["a__0.npy"]


def test_a_flat_folder_is_labelled_with_its_own_name_and_warned_about(videos: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert unlabelled_warning(videos, find_videos(videos)) is None  # every video in a class folder
    make_video(videos / "loose.mp4", frames=17, size=(64, 48), seed=3)
    warning = unlabelled_warning(videos, find_videos(videos))
    assert warning is not None and "1 of 3 videos lie directly in" in warning and "'videos'" in warning
    assert "--label" in warning
    monkeypatch.chdir(videos)  # `vad extract .`: the folder's real name, not an empty label
    jobs = plan_jobs(Path("."), tmp_path / "out")
    assert {j.name: j.label for j in jobs} == {"Abuse001_x264": "Abuse", "Normal_7": "Normal", "loose": "videos"}
    assert "'videos'" in (unlabelled_warning(Path("."), find_videos(Path("."))) or "")
