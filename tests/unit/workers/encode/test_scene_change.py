"""The scene-change gate: sensor noise is not a change, a small object far away is, and a slow drift is caught
once it adds up (the reference is the last encoded frame)."""

from __future__ import annotations

import numpy as np

from workers.encode.scene_change import ChangeGate, small_grey

RNG = np.random.default_rng(0)
SCENE = RNG.integers(40, 200, (360, 640, 3)).astype(np.int16)


def _frame(scene: np.ndarray = SCENE, noise: float = 4.0) -> np.ndarray:
    return np.clip(scene + RNG.normal(0, noise, scene.shape), 0, 255).astype(np.uint8)


def test_noise_is_no_change_and_a_small_object_is() -> None:
    gate = ChangeGate(threshold=8.0)
    assert gate.changed(_frame())  # the first frame is always encoded
    assert not any(gate.changed(_frame()) for _ in range(5))
    person = SCENE.copy()
    person[200:240, 300:320] = 0  # 20x40 pixels: 0.35 % of the frame
    assert gate.changed(_frame(person))
    assert (gate.encoded, gate.reused) == (2, 5)
    assert small_grey(_frame()).shape == (36, 64)


def test_a_slow_drift_is_encoded_once_it_adds_up_and_off_encodes_everything() -> None:
    gate = ChangeGate(threshold=8.0)
    changed = [gate.changed(_frame(SCENE + step, noise=0)) for step in range(0, 30, 3)]  # 3 levels a frame
    assert changed == [True, False, False, True, False, False, True, False, False, True]
    off = ChangeGate(threshold=0)
    assert all(off.changed(_frame(SCENE, noise=0)) for _ in range(3)) and off.encoded == 3


def test_a_plan_reuses_the_last_encoded_frame_across_batches() -> None:
    gate = ChangeGate(threshold=8.0)
    other = _frame(SCENE[::-1].copy())
    encode, take = gate.plan(np.stack([_frame(), _frame(), other, other]))
    assert encode.tolist() == [0, 2] and take.tolist() == [0, 0, 1, 1]
    encode, take = gate.plan(np.stack([other, _frame()]))
    assert encode.tolist() == [1] and take.tolist() == [-1, 0]
