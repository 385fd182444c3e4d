"""The demo recipe, its video plans, the cache key and the event check (the build itself: tests/e2e/test_demo.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from vad.schema import AnalysisResult
from workers.demo.cache import bundle_path, cached_bundle
from workers.demo.check import check_video, describe, frame_auc, frame_scores
from workers.demo.recipe import DemoRecipe, plan_videos
from workers.synthetic import Event, SyntheticVideo


def test_plans_are_deterministic_and_follow_the_recipe() -> None:
    recipe = DemoRecipe()
    train = plan_videos(recipe, "train")
    assert train == plan_videos(recipe, "train")
    assert len(train) == recipe.train_videos and len({p.seed for p in train}) == len(train)
    normal = [p for p in train if not p.events]
    assert len(normal) == recipe.train_videos // 2
    anomalous = [p for p in train if p.events]
    assert {p.class_name for p in anomalous} == set(recipe.classes)
    low, high = recipe.events_per_video
    first, last = recipe.event_margin_s - 1e-3, recipe.duration_s - recipe.event_margin_s + 1e-3
    for plan in anomalous:
        assert low <= len(plan.events) <= high and len({e.class_name for e in plan.events}) == 1
        for event in plan.events:
            assert first <= event.start_s < event.end_s <= last
            assert recipe.event_length_s[0] - 1e-3 <= event.end_s - event.start_s <= recipe.event_length_s[1] + 1e-3
    held = plan_videos(recipe, "heldout")
    assert [bool(p.events) for p in held] == [i % recipe.heldout_normal_every != recipe.heldout_normal_every - 1
                                              for i in range(recipe.heldout_videos)]
    seen = {p.seed for p in train} | {p.seed for p in plan_videos(recipe, "validation")}
    assert not {p.seed for p in held} & seen


def test_the_cache_key_follows_what_the_bundle_depends_on(tmp_path: Path) -> None:
    recipe = DemoRecipe()
    assert dataclasses.replace(recipe, heldout_videos=3).digest() == recipe.digest()
    assert dataclasses.replace(recipe, seed=1).digest() != recipe.digest()
    assert dataclasses.replace(recipe, fps=30.0).digest() != recipe.digest()
    assert bundle_path(recipe, tmp_path) == tmp_path / recipe.digest() / "bundle.safetensors"
    assert cached_bundle(recipe, tmp_path) is None
    bundle_path(recipe, tmp_path).parent.mkdir()
    bundle_path(recipe, tmp_path).write_bytes(b"not a bundle")
    assert cached_bundle(recipe, tmp_path) is None  # unreadable: rebuilt, not trusted


def test_processes_sharing_a_cache_build_the_bundle_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two builders on one cache (two `vad demo`, or test processes): the second waits for the first's lock, then
    takes its bundle. Threads stand in for processes: each opens the lock file itself, and flock locks belong to the
    open file, not to the process."""
    import threading
    import time

    import workers.demo.cache as cache
    from tests.conftest import tiny_bundle
    from workers.demo.build import BuildOutcome

    recipe, builds, started = DemoRecipe(), [], threading.Event()

    def build(recipe_: DemoRecipe, work: Path, **_: object) -> BuildOutcome:
        assert work.parent == bundle_path(recipe, tmp_path).parent and work.name.startswith(".build-")
        builds.append(work)
        started.set()
        time.sleep(0.5)  # the other caller arrives while this build runs
        bundle = dataclasses.replace(tiny_bundle(), source={"kind": "synthetic-demo", "recipe_hash": recipe.digest(),
                                                            "validation_auc": 0.9})
        return BuildOutcome(bundle, 0.9, 1, 0.5)

    monkeypatch.setattr(cache, "build_demo_bundle", build)
    results, waits = {}, []
    first = threading.Thread(target=lambda: results.setdefault("first", cache.ensure_demo_bundle(recipe, tmp_path)))
    first.start()
    assert started.wait(10)
    results["second"] = cache.ensure_demo_bundle(recipe, tmp_path, on_wait=lambda: waits.append(True))
    first.join(10)
    assert len(builds) == 1 and waits == [True]
    assert results["first"].built and not results["second"].built
    assert results["second"].path == results["first"].path and results["second"].validation_auc == 0.9
    assert not list(bundle_path(recipe, tmp_path).parent.glob(".build-*"))  # the scratch folder is gone
    assert cache.ensure_demo_bundle(recipe, tmp_path, rebuild=True).built and len(builds) == 2  # rebuild: builds


def test_a_training_run_below_the_validation_auc_is_trained_again_from_the_next_seed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weak labels let some seeds settle on a model that scores every snippet alike (AUC 0.5) or the wrong way
    round (AUC near 0): the build rejects such runs, and when every run is rejected it fails and caches nothing."""
    import workers.demo.cache as cache
    from workers.demo.build import train_until_valid
    from workers.exceptions import DemoBuildFailed

    aucs = {7: 0.5, 8: float("nan"), 9: 0.97, 10: 0.99}
    trained, rejected = [], []

    def train(seed: int) -> tuple[str, float]:
        trained.append(seed)
        return f"run {seed}", aucs[seed]

    assert train_until_valid(train, 7, 4, 0.95, lambda seed, auc: rejected.append(seed)) == ("run 9", 0.97)
    assert trained == [7, 8, 9] and rejected == [7, 8]  # the first good run ends it; NaN never passes
    assert train_until_valid(train, 9, 1, 0.95) == ("run 9", 0.97)
    with pytest.raises(DemoBuildFailed, match=r"2 run\(s\) stayed below validation frame AUC 0.95 \(seed 7: 0.500; "
                                              r"seed 8: nan\); nothing was cached"):
        train_until_valid(train, 7, 2, 0.95)

    def build(recipe_: DemoRecipe, work: Path, **_: object) -> None:
        (work / "run-0").mkdir()
        raise DemoBuildFailed("the demo model did not train")

    monkeypatch.setattr(cache, "build_demo_bundle", build)
    with pytest.raises(DemoBuildFailed):
        cache.ensure_demo_bundle(DemoRecipe(), tmp_path)
    assert cache.cached_bundle(DemoRecipe(), tmp_path) is None
    assert [p.name for p in bundle_path(DemoRecipe(), tmp_path).parent.iterdir()] == [".build.lock"]


def test_the_clip_config_matches_the_preset() -> None:
    recipe = DemoRecipe()
    cfg, clip = recipe.config(), recipe.clip_config()
    assert clip["embed_dim"] == cfg.visual_width
    assert clip["text_cfg"]["width"] == cfg.text.width and clip["text_cfg"]["layers"] == cfg.text.layers
    assert set(recipe.classes) <= set(cfg.class_names[1:])


def _video(events: tuple[Event, ...], frames: int = 250, fps: float = 25.0) -> SyntheticVideo:
    times = tuple(i / fps for i in range(frames))
    return SyntheticVideo(Path("v.mp4"), fps, frames, 96, 72, frames / fps, events, times, 0, "libx264", False)


def _result(scores: list[float], events: list[tuple[str, float, float]], frames: int = 250) -> AnalysisResult:
    n, step = len(scores), 16 / 25.0
    doc = {
        "video": {"filename": "v.mp4", "duration_s": frames / 25, "fps": 25.0, "frames": frames, "width": 96,
                  "height": 72, "codec": "h264", "decoder": "pyav"},
        "model": {"preset": "demo", "bundle_sha256": None, "clip": "demo-random/None", "demo": True,
                  "label": "synthetic demo model"},
        "settings": {},
        "classes": ["normal", "flash"],
        "timeline": {"start_s": [i * step for i in range(n)], "end_s": [(i + 1) * step for i in range(n)],
                     "score": scores, "class_probs": [[1 - s, s] for s in scores]},
        "summary": {"max_score": max(scores), "mean_score": float(np.mean(scores)), "anomalous": bool(events),
                    "top_classes": []},
        "events": [{"class": c, "class_prob": 0.9, "start_s": a, "end_s": b, "peak_score": 0.9, "mean_score": 0.8}
                   for c, a, b in events],
        "timings": {"decode_s": 0, "encode_s": 0, "model_s": 0, "total_s": 0},
    }
    return AnalysisResult.model_validate(doc)


@pytest.mark.parametrize(("detected", "matched", "right"), [
    ([("flash", 2.1, 4.9)], True, 1),
    ([("color_shift", 1.5, 5.5)], True, 0),     # times within 1 s, class wrong: matched, counted apart
    ([("flash", 0.5, 4.9)], False, 0),          # starts 1.5 s early
    ([("flash", 2.1, 3.0), ("flash", 4.2, 4.9)], False, 0),  # split in two
    ([], False, 0),
])
def test_check_video_needs_every_event_within_a_second(detected: list, matched: bool, right: int) -> None:
    video = _video((Event("flash", 2.0, 5.0),))
    check = check_video(_result([0.1] * 16, detected), video)
    assert (check.matched, check.classes_right) == (matched, right)


def test_a_normal_video_matches_only_without_events() -> None:
    assert check_video(_result([0.1] * 16, []), _video(())).matched
    assert not check_video(_result([0.1] * 16, [("flash", 1.0, 2.0)]), _video(())).matched
    assert describe([]) == "none" and describe([Event("flash", 2.0, 5.0)]) == "flash 2.0-5.0 s"


def test_frame_auc_gives_each_frame_its_snippet_score() -> None:
    video = _video((Event("flash", 3 * 16 / 25, 6 * 16 / 25),))  # snippets 3-5 exactly
    scores = [0.1] * 16
    scores[3:6] = [0.9, 0.8, 0.9]
    result = _result(scores, [])
    assert len(frame_scores(result)) == 250 and frame_scores(result)[48] == pytest.approx(0.9)
    assert frame_auc([result], [video]) == pytest.approx(1.0)
    scores[8] = 0.95  # one normal snippet above every event snippet
    assert frame_auc([_result(scores, [])], [video]) < 1.0
