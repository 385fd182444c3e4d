"""CUDA paths, run where a GPU is present (skipped with the reason elsewhere; bench/gpu.py measures them).

Everything a GPU changes: DSANet equals the CPU in fp32, the CLIP encoder's bf16/fp16 features stay close to fp32,
tensors stay on the chosen device, and a training step runs under CUDA autocast.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.inference import DSANetPredictor
from tests.conftest import tiny_bundle
from workers.encode.clip_encoder import ClipImageEncoder, resolve_device, resolve_precision
from workers.settings import WorkerSettings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device (scripts/gpu-check.sh runs the GPU check on one)")


@pytest.fixture(scope="module")
def bundle():  # type: ignore[no-untyped-def]
    return tiny_bundle("ucf", seed=1)


def test_dsanet_on_cuda_equals_the_cpu_in_fp32(bundle) -> None:  # type: ignore[no-untyped-def]
    features = np.random.default_rng(0).normal(size=(300, bundle.config.visual_width)).astype(np.float32)
    cpu = DSANetPredictor(bundle, device="cpu").score(features)
    gpu_predictor = DSANetPredictor(bundle, device="cuda")
    assert next(gpu_predictor.model.parameters()).device.type == "cuda"
    gpu = gpu_predictor.score(features)
    np.testing.assert_allclose(gpu.anomaly, cpu.anomaly, atol=1e-5)
    np.testing.assert_allclose(gpu.class_probs, cpu.class_probs, atol=1e-5)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_clip_half_precision_features_stay_close_to_fp32(bundle, precision: str) -> None:  # type: ignore[no-untyped-def]
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (8, 64, 96, 3), dtype=np.uint8))
    settings = WorkerSettings(device="cuda", clip_precision="fp32")
    fp32 = ClipImageEncoder.create(settings, bundle)
    half = ClipImageEncoder.create(settings.model_copy(update={"clip_precision": precision}), bundle)
    a, b = fp32.encode_snippets(frames, (0,))[0], half.encode_snippets(frames, (0,))[0]
    # the encoder runs on the GPU; encode_snippets hands its features back on the CPU (its contract)
    assert fp32.device.type == half.device.type == "cuda" and half.precision == precision
    assert a.device.type == b.device.type == "cpu" and a.dtype == b.dtype == torch.float32
    assert float(torch.nn.functional.cosine_similarity(a.float(), b.float()).min()) >= 0.999


def test_auto_picks_cuda_and_a_half_precision() -> None:
    device = resolve_device("auto")
    assert device.type == "cuda"
    assert resolve_precision("auto", device) == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_training_steps_on_cuda(tmp_path, amp: str) -> None:  # type: ignore[no-untyped-def]
    from model.benchmark.index import packaged_index
    from model.benchmark.synthetic import SynthOptions, write_synthetic_benchmark
    from tests.unit.model.train.test_training import WIDTH, make_trainer, reduced_config

    cfg = reduced_config(batch_size=4, max_epoch=1, eval_every=0)
    write_synthetic_benchmark(tmp_path / "data", cfg, packaged_index("ucf"),
                              SynthOptions(scale=0.02, max_snippets=64, width=WIDTH, signal=8.0))
    trainer = make_trainer(tmp_path / "data", cfg, tmp_path / "run", device="cuda", amp=amp, stop_after=2)
    result = trainer.fit()
    assert result.state.step == 2 and not result.completed
    assert next(trainer.model.parameters()).device.type == "cuda"
    assert all(np.isfinite(v.float().cpu().numpy()).all() for v in result.weights.values())
