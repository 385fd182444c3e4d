"""Annotation parsers, test lists and frame-level ground truth (spec A.2, A.5), on hand-made and real files."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

from model.benchmark.groundtruth import (
    VideoEntry,
    build_frame_gt,
    load_gt_segments,
    lookup_intervals,
    parse_ucf_temporal_annotations,
    parse_xd_annotations,
    read_test_list,
)
from model.exceptions import EvaluationError, ModelError

BENCHMARKS = Path(__file__).parents[4].parent / "shared" / "data" / "benchmarks"


@pytest.fixture(scope="module")
def benchmarks() -> Path:
    if not (BENCHMARKS / "Temporal_Anomaly_Annotation.txt").is_file():
        pytest.skip(f"benchmark annotation files not found under {BENCHMARKS} (shared data not mounted)")
    return BENCHMARKS


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- parsers ---------------------------------------------------------------------------------------------------


def test_parse_ucf_reads_one_or_two_intervals_and_skips_absent(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "ann.txt",
        "Abuse028_x264  Abuse  165  240  -1  -1  \n"
        "Arson011_x264  Arson  150  420  680  1267  \n"
        "\n"
        "Normal_Videos_003_x264  Normal  -1  -1  -1  -1",
    )
    assert parse_ucf_temporal_annotations(path) == {
        "Abuse028_x264": [(165, 240)],
        "Arson011_x264": [(150, 420), (680, 1267)],
        "Normal_Videos_003_x264": [],
    }


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("Abuse028_x264  Abuse  165  240  -1", "start/end frame pairs"),
        ("Abuse028_x264", "start/end frame pairs"),
        ("Abuse028_x264  Abuse  165  2x0  -1  -1", "integers"),
        ("Abuse028_x264  Abuse  165  -1  -1  -1", "half absent"),
        ("Abuse028_x264  Abuse  240  165  -1  -1", "start < end"),
    ],
)
def test_parse_ucf_rejects_malformed_lines(tmp_path: Path, line: str, message: str) -> None:
    path = _write(tmp_path, "ann.txt", line + "\n")
    with pytest.raises(EvaluationError, match=message) as info:
        parse_ucf_temporal_annotations(path)
    assert f"{path}:1" in str(info.value)
    assert isinstance(info.value, ModelError) and isinstance(info.value, ValueError)


def test_parse_rejects_a_video_annotated_twice(tmp_path: Path) -> None:
    path = _write(tmp_path, "ann.txt", "v1 0 10\nv1.mp4 20 30\n")
    with pytest.raises(EvaluationError, match="annotated twice"):
        parse_xd_annotations(path)


def test_parse_xd_reads_all_pairs_and_strips_mp4(tmp_path: Path) -> None:
    path = _write(tmp_path, "ann.txt", "v=abc__#1_label_B4-0-0 0 1517 1970 3038\nClip__#1_label_G-0-0.mp4 150 779")
    assert parse_xd_annotations(path) == {
        "v=abc__#1_label_B4-0-0": [(0, 1517), (1970, 3038)],
        "Clip__#1_label_G-0-0": [(150, 779)],
    }


def test_parse_xd_rejects_a_dangling_frame(tmp_path: Path) -> None:
    path = _write(tmp_path, "ann.txt", "ok 0 10\nbad 0 10 20\n")
    with pytest.raises(EvaluationError, match=r"ann.txt:2"):
        parse_xd_annotations(path)


def test_lookup_intervals_exact_then_unique_substring() -> None:
    annotations = {"movie__#1_label_B1-0-0": [(1, 5)], "movie__#1_label_B1-0-0_extra": [(7, 9)], "other": [(2, 3)]}
    assert lookup_intervals("movie__#1_label_B1-0-0", annotations) == [(1, 5)]
    assert lookup_intervals("oth", annotations) == [(2, 3)]
    with pytest.raises(EvaluationError, match="several annotations"):
        lookup_intervals("movie", annotations)
    with pytest.raises(EvaluationError, match="no annotation"):
        lookup_intervals("missing", annotations)


# --- frame ground truth ----------------------------------------------------------------------------------------


def test_build_frame_gt_sets_intervals_and_drops_the_last_snippet() -> None:
    # snippet_frames=4, n=2: 12 zeros, [3, 6) set, last 4 dropped -> 8 frames.
    gt = build_frame_gt(["a"], [2], {"a": [(3, 6)]}, snippet_frames=4)
    np.testing.assert_array_equal(gt, [0, 0, 0, 1, 1, 1, 0, 0])
    assert gt.dtype == np.float32


def test_build_frame_gt_cuts_intervals_beyond_the_snippets() -> None:
    # [6, 20) is cut at 4n = 8; [9, 11) lies in the dropped snippet; [30, 40) is beyond the allocation.
    gt = build_frame_gt(["a"], [2], {"a": [(6, 20), (9, 11), (30, 40)]}, snippet_frames=4)
    np.testing.assert_array_equal(gt, [0, 0, 0, 0, 0, 0, 1, 1])


def test_build_frame_gt_concatenates_in_order_with_normal_videos() -> None:
    intervals = {"b": [(0, 2)], "a": [(4, 5)], "u": []}
    gt = build_frame_gt(["a", "n", "b", "u"], [2, 1, 1, 1], intervals, snippet_frames=4, normal_videos={"n"})
    expected = np.r_[[0, 0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]  # a, n, b, u
    np.testing.assert_array_equal(gt, expected)


def test_build_frame_gt_default_snippet_length_is_16() -> None:
    gt = build_frame_gt(["a", "b"], [3, 1], {"a": [(40, 100)], "b": [(0, 16)]})
    assert len(gt) == 16 * 4
    assert gt[:48].sum() == 8 and gt[40:48].all()  # 40..47 survive, 48.. belong to the dropped snippet
    assert gt[48:].all()


def test_build_frame_gt_errors_say_what_to_fix() -> None:
    with pytest.raises(EvaluationError, match="one count per video"):
        build_frame_gt(["a", "b"], [1], {"a": [], "b": []})
    with pytest.raises(EvaluationError, match="normal_videos"):
        build_frame_gt(["x"], [1], {"a": []})
    with pytest.raises(EvaluationError, match="negative"):
        build_frame_gt(["a"], [-1], {"a": []})


# --- test lists and segment files ------------------------------------------------------------------------------


def test_read_test_list_strips_directory_and_crop(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.csv", "path,label\n/d/Abuse/Abuse028_x264__5.npy,Abuse\nx__y__0.npy,A\n")
    assert read_test_list(path) == [VideoEntry("Abuse028_x264", "Abuse"), VideoEntry("x__y", "A")]


def test_read_test_list_rejects_bad_header_and_paths(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="path,label"):
        read_test_list(_write(tmp_path, "a.csv", "file,label\nx__0.npy,A\n"))
    with pytest.raises(EvaluationError, match=r"b.csv:3.*__<crop>.npy"):
        read_test_list(_write(tmp_path, "b.csv", "path,label\nx__0.npy,A\nx.npy,A\n"))


def test_load_gt_segments_rejects_mismatched_files(tmp_path: Path) -> None:
    segments = np.empty(2, dtype=object)
    segments[:] = [[["1", "5"]], [[0, 16]]]
    labels = np.empty(2, dtype=object)
    labels[:] = [["Abuse"], ["A", "A"]]
    np.save(tmp_path / "s.npy", segments, allow_pickle=True)
    np.save(tmp_path / "l.npy", labels, allow_pickle=True)
    with pytest.raises(EvaluationError, match="video 1: 1 intervals but 2 labels"):
        load_gt_segments(tmp_path / "s.npy", tmp_path / "l.npy")
    np.save(tmp_path / "l1.npy", labels[:1], allow_pickle=True)
    with pytest.raises(EvaluationError, match="same dataset"):
        load_gt_segments(tmp_path / "s.npy", tmp_path / "l1.npy")


# --- the real benchmark files (counts from shared/data/benchmarks/README.md) -------------------------------------


def test_real_ucf_temporal_annotations(benchmarks: Path) -> None:
    annotations = parse_ucf_temporal_annotations(benchmarks / "Temporal_Anomaly_Annotation.txt")
    anomalous = {name: pairs for name, pairs in annotations.items() if pairs}
    assert len(annotations) == 290
    assert len(anomalous) == 140
    assert sum(map(len, anomalous.values())) == 156
    assert sum(len(pairs) == 2 for pairs in anomalous.values()) == 16
    assert set(annotations) == {video.name for video in read_test_list(benchmarks / "ucf_CLIP_rgbtest.csv")}


def test_real_xd_annotations(benchmarks: Path) -> None:
    annotations = parse_xd_annotations(benchmarks / "annotations.txt")
    raw_names = [line.split()[0] for line in (benchmarks / "annotations.txt").read_text().splitlines()]
    assert len(annotations) == 500
    assert sum(map(len, annotations.values())) == 1238
    assert max(map(len, annotations.values())) == 22
    assert sum(name.endswith(".mp4") for name in raw_names) == 14
    violent = [video.name for video in read_test_list(benchmarks / "xd_CLIP_rgbtest.csv") if video.label != "A"]
    assert len(violent) == 500
    assert set(violent) == set(annotations)  # once ".mp4" is stripped, every violent test video matches exactly
    assert sum(len(lookup_intervals(name, annotations)) for name in violent) == 1238


def test_real_test_lists(benchmarks: Path) -> None:
    ucf = read_test_list(benchmarks / "ucf_CLIP_rgbtest.csv")
    xd = read_test_list(benchmarks / "xd_CLIP_rgbtest.csv")
    assert len(ucf) == 290 and ucf[0] == VideoEntry("Abuse028_x264", "Abuse")
    assert [video.label == "Normal" for video in ucf] == [False] * 140 + [True] * 150
    assert len(xd) == 800 and [video.label == "A" for video in xd] == [False] * 500 + [True] * 300


def test_real_ucf_segments_agree_with_the_temporal_annotation(benchmarks: Path) -> None:
    gt = load_gt_segments(benchmarks / "gt_segment_ucf.npy", benchmarks / "gt_label_ucf.npy")
    videos = read_test_list(benchmarks / "ucf_CLIP_rgbtest.csv")
    annotations = parse_ucf_temporal_annotations(benchmarks / "Temporal_Anomaly_Annotation.txt")
    assert len(gt.segments) == len(gt.labels) == 290
    assert sum(map(len, gt.segments)) == 306
    for video, segments, labels in zip(videos, gt.segments, gt.labels, strict=True):
        assert all(isinstance(bound, int) for pair in segments for bound in pair)
        if video.label == "Normal":
            assert labels == ["A"] and len(segments) == 1 and segments[0][0] == 0 and segments[0][1] % 16 == 0
        else:
            assert segments == annotations[video.name]
            assert labels == [video.label] * len(segments)
    pairs = zip(gt.segments, gt.labels, strict=True)
    normal_snippets = sum(segments[0][1] // 16 for segments, labels in pairs if labels == ["A"])
    assert normal_snippets == 40_494


def test_real_xd_segments(benchmarks: Path) -> None:
    gt = load_gt_segments(benchmarks / "gt_segment.npy", benchmarks / "gt_label.npy")
    labels = collections.Counter(label for video_labels in gt.labels for label in video_labels)
    assert len(gt.segments) == 800 and sum(map(len, gt.segments)) == 1572
    assert labels == {"A": 300, "B1": 245, "B2": 214, "B4": 154, "B5": 15, "B6": 494, "G": 150}


def test_real_ucf_frame_gt_marks_every_annotated_frame(benchmarks: Path) -> None:
    gt = load_gt_segments(benchmarks / "gt_segment_ucf.npy", benchmarks / "gt_label_ucf.npy")
    videos = read_test_list(benchmarks / "ucf_CLIP_rgbtest.csv")
    # Normal videos: n from their [0, 16n] interval; anomalous ones: long enough to keep every annotated frame.
    counts = [max(end for _, end in segments) // 16 + 1 for segments in gt.segments]
    annotations = parse_ucf_temporal_annotations(benchmarks / "Temporal_Anomaly_Annotation.txt")
    frame_gt = build_frame_gt([video.name for video in videos], counts, annotations)
    assert len(frame_gt) == 16 * sum(counts)
    assert frame_gt.sum() == 84_189
