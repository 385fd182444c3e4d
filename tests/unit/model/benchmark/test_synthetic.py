"""The benchmark index and the synthetic benchmark: real structure, readable by the real parsers, learnable."""

from __future__ import annotations

import collections
import csv
from pathlib import Path

import numpy as np
import pytest

from model.benchmark.groundtruth import load_gt_segments, parse_ucf_temporal_annotations, parse_xd_annotations
from model.benchmark.index import packaged_index, read_benchmark_index
from model.benchmark.metrics import frame_metrics
from model.benchmark.protocol import LabelEncoder, read_feature_list
from model.benchmark.synthetic import Palette, SynthOptions, write_synthetic_benchmark
from model.benchmark.testset import BenchmarkFiles, load_test_set, normal_length_mismatches, read_test_entries
from model.config import load_preset

BENCHMARKS = Path(__file__).parents[4].parent / "shared" / "data" / "benchmarks"
OPTIONS = SynthOptions(scale=0.02, max_snippets=48, width=32, seed=1, signal=8.0)


@pytest.fixture(scope="module", params=["ucf", "xd"])
def dataset(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp(f"synthetic-{request.param}")
    write_synthetic_benchmark(root, load_preset(request.param), packaged_index(request.param), OPTIONS)
    return request.param, root


# --- the index -------------------------------------------------------------------------------------------------


def test_packaged_index_has_the_real_structure() -> None:
    ucf, xd = packaged_index("ucf"), packaged_index("xd")
    assert (len(ucf.train), len(ucf.test), len(xd.train), len(xd.test)) == (1610, 290, 3954, 800)
    assert all(v.crops == tuple(range(10)) for v in (*ucf.train, *xd.train))
    assert {v.crops for v in ucf.test} == {(5,)} and {v.crops for v in xd.test} == {(0,)}
    assert sum(len(v.intervals) for v in ucf.test) == 156 and sum(bool(v.intervals) for v in ucf.test) == 140
    assert sum(len(v.intervals) for v in xd.test) == 1272
    assert sum(v.snippets for v in ucf.test if v.snippets) == 40494
    assert sum(v.snippets for v in xd.test if v.snippets) == 78295
    assert ucf.test[0].name == "Abuse028_x264" and ucf.test[0].intervals == ((165, 240, "Abuse"),)


def test_packaged_index_matches_the_official_files() -> None:
    if not (BENCHMARKS / "ucf_CLIP_rgb.csv").is_file():
        pytest.skip(f"official list files not found under {BENCHMARKS} (shared data not mounted)")
    for preset in ("ucf", "xd"):
        assert read_benchmark_index(BENCHMARKS, load_preset(preset)) == packaged_index(preset)


# --- the synthetic benchmark -----------------------------------------------------------------------------------


def test_lists_keep_the_real_names_order_and_crops(dataset: tuple[str, Path]) -> None:
    preset, root = dataset
    cfg, index = load_preset(preset), packaged_index(preset)
    train = read_feature_list(root / "list" / cfg.training.train_list, root, cfg.training.list_prefix)
    test = read_feature_list(root / "list" / cfg.training.test_list, root, cfg.training.list_prefix)
    with (root / "list" / cfg.training.test_list).open() as handle:
        assert next(csv.reader(handle)) == ["path", "label"]
        assert next(csv.reader(handle))[0].startswith(cfg.training.list_prefix)
    real_order = {v.name: i for i, v in enumerate(index.test)}
    assert [real_order[e.video] for e in test] == sorted(real_order[e.video] for e in test)
    assert {e.crop for e in test} == {cfg.training.test_crop}
    crops = collections.Counter(e.video for e in train)
    assert set(crops.values()) == {10}
    encoder = LabelEncoder(cfg)
    assert {encoder.codes(e.label)[0] for e in test} == {c.label for c in cfg.classes}  # every class is tested
    assert all(e.path.is_file() for e in (*train, *test))
    array = np.load(test[0].path)
    assert array.dtype == np.float32 and array.ndim == 2 and array.shape[1] == OPTIONS.width
    assert 1 <= array.shape[0] <= OPTIONS.max_snippets
    manifest = (root / "manifest.json").read_text()
    assert '"synthetic": true' in manifest and "SYNTHETIC" in (root / "README.txt").read_text()


def test_ground_truth_files_have_the_official_form(dataset: tuple[str, Path]) -> None:
    preset, root = dataset
    cfg = load_preset(preset).replace(visual_width=OPTIONS.width)
    files = BenchmarkFiles(cfg, root / "list", root)
    raw = np.load(files.gt_segments, allow_pickle=True)
    labels = np.load(files.gt_labels, allow_pickle=True)
    assert raw.dtype == object and labels.dtype == object and isinstance(raw[0], list)
    entries = read_test_entries(files)
    test = load_test_set(files, build_missing_gt=False)
    for entry, intervals, video_labels, n in zip(entries, raw, labels, test.snippet_counts, strict=True):
        if LabelEncoder(cfg).is_normal(entry.label):
            assert intervals == [[0, 16 * n]] and video_labels == ["A"]
        else:
            assert all(isinstance(b, str) for pair in intervals for b in pair)
            assert set(video_labels) <= {c.label for c in cfg.classes[1:]}
    assert len(test.frame_gt) == 16 * sum(test.snippet_counts) and test.frame_gt.dtype == np.float32
    assert normal_length_mismatches(cfg, entries, test.snippet_counts, load_gt_segments(files.gt_segments,
                                                                                       files.gt_labels)) == []
    parse = parse_ucf_temporal_annotations if preset == "ucf" else parse_xd_annotations
    annotated = parse(files.annotations)
    assert set(annotated) <= {e.video for e in entries}
    anomalous_frames = sum(min(e, 16 * n) - s for entry, n in zip(entries, test.snippet_counts, strict=True)
                           for s, e in annotated.get(entry.video, []))
    assert 0 < test.frame_gt.sum() <= anomalous_frames


def test_anomalies_are_separable_in_the_features(dataset: tuple[str, Path]) -> None:
    preset, root = dataset
    cfg = load_preset(preset).replace(visual_width=OPTIONS.width)
    test = load_test_set(BenchmarkFiles(cfg, root / "list", root))
    palette = Palette(cfg, OPTIONS)
    oracle = [np.max([f @ d for d in palette.directions.values()], axis=0) for f in test.features]
    assert frame_metrics(oracle, test.frame_gt).auc > 0.97
    chance = [np.random.default_rng(0).normal(size=len(f)) for f in test.features]
    assert frame_metrics(chance, test.frame_gt).auc < 0.6


def test_generation_is_deterministic_and_subsets_share_videos(tmp_path: Path) -> None:
    cfg, index = load_preset("ucf"), packaged_index("ucf")
    small = SynthOptions(scale=0.01, max_snippets=16, width=16, seed=3)
    write_synthetic_benchmark(tmp_path / "a", cfg, index, small)
    write_synthetic_benchmark(tmp_path / "b", cfg, index, small)
    write_synthetic_benchmark(tmp_path / "c", cfg, index, SynthOptions(scale=0.02, max_snippets=16, width=16, seed=3))
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.npy"))
    for rel in files_a:
        assert np.array_equal(np.load(tmp_path / "a" / rel, allow_pickle=True),
                              np.load(tmp_path / "b" / rel, allow_pickle=True)), rel
    shared = [rel for rel in files_a if "ClipFeatures" in str(rel) and (tmp_path / "c" / rel).is_file()]
    assert shared
    for rel in shared:
        assert np.array_equal(np.load(tmp_path / "a" / rel), np.load(tmp_path / "c" / rel)), rel
