"""The precision probe of live streams: the pick from measured timings and cosines, the cache and its key, the
setting that overrides it, and one real probe of a tiny tower."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from workers.encode.clip_encoder import ClipImageEncoder, build_vision_tower
from workers.encode.clip_weights import make_weights
from workers.encode.precision_probe import (
    Measurement,
    PrecisionCache,
    choose_precision,
    measure,
    pick,
    probe_frames,
    stream_encoder,
)
from workers.settings import WorkerSettings

pytestmark = pytest.mark.timeout(120)

TINY_CLIP = {
    "model_name": "tiny", "pretrained": None,
    "config": {"embed_dim": 32, "quick_gelu": True,
               "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16}},
}


@pytest.fixture(scope="module")
def encoder() -> ClipImageEncoder:
    torch.manual_seed(0)
    weights = make_weights(build_vision_tower(TINY_CLIP["config"]).state_dict(), "bundle", None)
    return ClipImageEncoder(TINY_CLIP, weights, precision="fp32", batch_size=4)


def m(precision: str, seconds: float | None, cosine: float | None) -> Measurement:
    return Measurement(precision, seconds, cosine)


@pytest.mark.parametrize(("measurements", "expected"), [
    ([m("fp32", 1.0, 1.0), m("int8", 0.55, 0.9996), m("bf16", 4.0, 0.9999)], "int8"),  # AVX2-only CPU
    ([m("fp32", 1.0, 1.0), m("int8", 0.55, 0.99), m("bf16", 4.0, 0.9999)], "fp32"),  # int8 too far from fp32
    ([m("fp32", 1.0, 1.0), m("int8", 0.6, 0.999), m("bf16", 0.5, 0.9999)], "bf16"),  # AMX: bf16 fastest
    ([m("fp32", 1.0, 1.0), m("int8", 0.4, 0.995), m("bf16", None, None)], "int8"),  # the bound is inclusive
    ([m("fp32", 1.0, 1.0), m("int8", None, None), m("bf16", 3.1, None)], "fp32"),  # failed / dropped as slow
    ([m("fp32", 0.5, 1.0), m("int8", 0.6, 0.9999)], "fp32"),  # int8 slower here
])
def test_pick_is_the_fastest_close_enough(measurements: list[Measurement], expected: str) -> None:
    assert pick(measurements, 0.995) == expected


def test_pick_needs_fp32() -> None:
    with pytest.raises(ValueError, match="no fp32"):
        pick([m("int8", 0.5, None)], 0.995)


def test_the_choice_is_cached_per_key_and_reused(encoder: ClipImageEncoder, tmp_path: Path) -> None:
    calls: list[tuple[int, ...]] = []

    def fake_measure(enc: ClipImageEncoder, frames: np.ndarray) -> list[Measurement]:
        calls.append(frames.shape)
        return [m("fp32", 1.0, 1.0), m("int8", 0.5, 0.9999), m("bf16", 5.0, 0.99999)]

    cache = PrecisionCache(tmp_path)
    first = choose_precision(encoder, cache, measure_fn=fake_measure, cpu="CPU A")
    again = choose_precision(encoder, cache, measure_fn=fake_measure, cpu="CPU A")
    assert (first.precision, first.source, again.precision, again.source) == ("int8", "probe", "int8", "cache")
    assert again.measurements == first.measurements and len(calls) == 1
    assert calls[0][0] == 4 and calls[0][3] == 3  # the encoder's batch of RGB scene frames
    other = choose_precision(encoder, cache, measure_fn=fake_measure, cpu="CPU B")  # another CPU: measured again
    assert other.source == "probe" and other.key != first.key and len(calls) == 2
    stricter = choose_precision(encoder, cache, min_cosine=0.99999, measure_fn=fake_measure, cpu="CPU A")
    assert (stricter.precision, stricter.source) == ("fp32", "probe")  # another bound: not the cached choice
    cache.path(first.key).write_text("{not json")
    assert cache.get(first.key) is None  # a damaged file is measured again, not an error


def test_the_setting_overrides_the_probe(encoder: ClipImageEncoder, tmp_path: Path) -> None:
    settings = WorkerSettings(clip_precision="fp32", precision_cache_dir=tmp_path)
    got, choice = stream_encoder(encoder, settings)
    assert got is encoder and (choice.precision, choice.source) == ("fp32", "setting")
    off = WorkerSettings(stream_precision_probe=False, precision_cache_dir=tmp_path)
    assert stream_encoder(encoder, off)[1].source == "setting"
    assert not list(tmp_path.iterdir())  # nothing measured


def test_a_candidate_whose_warm_up_is_too_slow_is_dropped_unmeasured(encoder: ClipImageEncoder,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """On a clock the runner moves: fp32 10 ms an image, int8 5 ms, bf16 40 ms (8x the fastest warm-up, int8's:
    dropped after it)."""
    from types import SimpleNamespace

    import workers.encode.precision_probe as probe

    clock, cost = [0.0], {"fp32": 0.010, "int8": 0.005, "bf16": 0.040}
    calls: list[tuple[str, int]] = []

    def run(variant: ClipImageEncoder, frames: np.ndarray) -> torch.Tensor:
        calls.append((variant.precision, len(frames)))
        clock[0] += cost[variant.precision] * len(frames)
        return torch.ones(len(frames), 4)

    monkeypatch.setattr(probe, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    got = {x.precision: x for x in measure(encoder, np.zeros((3, 8, 8, 3), np.uint8), repeats=2, run=run)}
    assert got["fp32"] == Measurement("fp32", pytest.approx(0.010), 1.0)
    assert got["int8"] == Measurement("int8", pytest.approx(0.005), 1.0)
    assert got["bf16"] == Measurement("bf16", pytest.approx(0.040), None, "warm-up 8.0x the fastest")
    assert [c for c in calls if c[0] == "bf16"] == [("bf16", 1)]  # its warm-up only
    assert pick(list(got.values()), 0.995) == "int8"


def test_a_real_probe_of_a_tiny_tower(encoder: ClipImageEncoder, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import workers.encode.precision_probe as probe

    # every precision measured to the end, whatever the machine's load does to one warm-up (the drop: above)
    monkeypatch.setattr(probe, "SLOW_FACTOR", float("inf"))
    frames = probe_frames(2, size=(96, 64))
    assert frames.std() > 10  # a scene, not a flat image
    measured = {x.precision: x for x in measure(encoder, frames, repeats=1)}
    assert set(measured) == {"fp32", "int8", "bf16"}
    assert measured["fp32"].cosine_min == pytest.approx(1.0, abs=1e-5)
    assert measured["int8"].seconds_per_image is not None and 0.9 < (measured["int8"].cosine_min or 0) <= 1.0
    settings = WorkerSettings(stream_precision_probe=True, precision_cache_dir=tmp_path)
    streams, choice = stream_encoder(encoder, settings)
    assert streams.precision == choice.precision and choice.source == "probe"
    assert encoder.precision == "fp32"  # the uploads' encoder keeps the official features
    assert len(list(tmp_path.glob("*.json"))) == 1
