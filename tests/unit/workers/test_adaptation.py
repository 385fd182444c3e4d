"""Adaptation from verdicts on synthetic features: the held-out split, and fine-tuning end to end (a reduced DSANet
whose random weights cannot tell a camera's look-alike from its true alerts; a few epochs on the camera's verdicts
and normal windows can, and the rule of vad.bundles lets the candidate into shadow)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from model.bundle import Bundle
from tests.conftest import TINY_CLIP, random_clip_state_dict, tiny_config
from vad.bundles import offline_rule
from workers.adaptation import Sample, fine_tune, split

WIDTH = 64


@functools.cache
def _base() -> Bundle:
    import torch

    from model.factory import bundle_from_model, create_model, load_clip_text_weights

    torch.manual_seed(3)
    model = create_model(tiny_config("ucf", WIDTH).replace(visual_length=64), with_text_tower=True)
    clip = random_clip_state_dict(TINY_CLIP, 3)
    load_clip_text_weights(model, clip)
    return bundle_from_model(model, clip, clip={"model_name": "custom", "pretrained": None, "config": TINY_CLIP})


def camera(seed: int = 0, alerts: int = 8, alarms: int = 8, windows: int = 6) -> list[Sample]:
    """A camera's reviewed events and normal windows: unit-norm features around the scene's own direction; true
    alerts and look-alike false alarms add two other directions over snippets 16-23 of 40."""
    rng = np.random.default_rng(seed)
    scene, lookalike, alert = (rng.normal(size=WIDTH) for _ in range(3))
    classes = tiny_config("ucf", WIDTH).classes
    normal, abnormal = classes[0].label, classes[1].label

    def features(n: int, direction: np.ndarray | None) -> np.ndarray:
        x = rng.normal(size=(n, WIDTH)) * 0.3 + scene
        if direction is not None:
            x[16:24] += direction
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return ([Sample(f"alert{i}", "true_alert", features(40, alert), abnormal, (16, 23)) for i in range(alerts)]
            + [Sample(f"alarm{i}", "false_alarm", features(40, lookalike), normal) for i in range(alarms)]
            + [Sample(f"cam.normal{i}", "normal", features(64, None), normal) for i in range(windows)])


def test_the_split_holds_out_a_share_of_each_kind_by_name() -> None:
    samples = camera(alerts=5, alarms=1, windows=10)
    train, held = split(samples, 0.3)
    kinds = [s.kind for s in held]
    assert (kinds.count("true_alert"), kinds.count("false_alarm"), kinds.count("normal")) == (2, 0, 3)
    assert len(train) + len(held) == len(samples)
    assert [s.name for s in split(list(reversed(samples)), 0.3)[1]] == [s.name for s in held]  # by name, not order


@pytest.mark.slow
def test_fine_tuning_on_a_cameras_verdicts_beats_its_parent_on_held_out_ones(one_thread: None) -> None:
    base = _base()
    train, held = split(camera(), 0.3)
    stages: list[str] = []
    adapted = fine_tune(base, base, train, held, epochs=4, lr=1e-3, progress=lambda stage, f: stages.append(stage))
    m = adapted.metrics
    assert (m.true_alerts, m.false_alarms, m.normal_windows) == (2, 2, 2)
    assert m.candidate_auc is not None and m.parent_auc is not None and m.candidate_auc > max(0.9, m.parent_auc)
    assert m.candidate_false_alarms is not None and m.parent_false_alarms is not None
    assert m.candidate_false_alarms <= m.parent_false_alarms
    assert offline_rule(m)[0], offline_rule(m)[1]
    assert stages[0] == "training" and stages[-1] == "comparing"
    assert not adapted.bundle.clip_state_dict  # DSANet and class embeddings only
    assert adapted.data["held_out"]["true_alert"] == [s.name for s in held if s.kind == "true_alert"]
    assert adapted.training["iterations"] > 0 and adapted.bundle.source["kind"] == "adapted"
