"""The int8 CPU encoder: attention rewritten with linear projections (exact), every linear layer quantised,
features close to fp32's, refused on a GPU, chosen by the setting and recorded in the result; the batch size
per device."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from tests.conftest import tiny_bundle
from workers.encode.attention import ProjectedAttention
from workers.encode.clip_encoder import ClipImageEncoder, resolve_precision
from workers.encode.clip_weights import make_weights
from workers.encode.cpu import cpu_flags
from workers.encode.quantize import fold_quick_gelu
from workers.exceptions import ConfigurationError
from workers.settings import WorkerSettings

pytestmark = pytest.mark.timeout(120)

# two blocks of width 128 on 64-pixel images (the demo model's CLIP): big enough for quantisation noise to show
SMALL_CLIP = {
    "model_name": "small", "pretrained": None,
    "config": {"embed_dim": 64, "quick_gelu": True,
               "vision_cfg": {"image_size": 64, "layers": 2, "width": 128, "patch_size": 16}},
}


@pytest.fixture(scope="module")
def weights():
    from workers.encode.clip_encoder import build_vision_tower

    torch.manual_seed(0)
    state = build_vision_tower(SMALL_CLIP["config"]).state_dict()
    return make_weights(state, "bundle", None)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Smooth frames with a few shapes, closer to video than uniform noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:72, 0:96]
    out = []
    for _ in range(12):
        base = (np.sin(x / rng.uniform(5, 30)) + np.cos(y / rng.uniform(5, 30))) * 60 + 128
        frame = np.stack([base * rng.uniform(0.5, 1.0) for _ in range(3)], axis=-1)
        top, left = rng.integers(0, 40), rng.integers(0, 60)
        frame[top : top + 25, left : left + 30] = rng.integers(0, 256, 3)
        out.append(frame)
    return np.clip(np.stack(out), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("batch_first", [True, False])
def test_projected_attention_is_multihead_attention(batch_first: bool) -> None:
    torch.manual_seed(1)
    mha = nn.MultiheadAttention(32, 4, batch_first=batch_first).eval()
    projected = ProjectedAttention(mha)
    assert projected.in_proj.weight is mha.in_proj_weight, "the same tensors, not copies"
    x = torch.randn(3, 7, 32) if batch_first else torch.randn(7, 3, 32)
    causal = torch.triu(torch.ones(7, 7, dtype=torch.bool), diagonal=1)
    for mask in (None, causal, torch.zeros(7, 7).masked_fill(causal, float("-inf"))):
        with torch.inference_mode():
            expected = mha(x, x, x, need_weights=False, attn_mask=mask)[0]
            got, none = projected(x, x, x, need_weights=False, attn_mask=mask)
        assert none is None
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="self-attention"):
        projected(x, torch.zeros_like(x), x)


def test_project_attention_converts_self_attention_blocks_and_leaves_the_rest() -> None:
    from workers.encode.attention import project_attention

    blocks = nn.ModuleList([nn.Module() for _ in range(3)])
    blocks[0].attn = nn.MultiheadAttention(16, 2, batch_first=True)
    blocks[1].attn = nn.MultiheadAttention(16, 2, add_bias_kv=True)  # extra key/value biases: not convertible
    blocks[2].attn = nn.MultiheadAttention(16, 2, kdim=8, vdim=8)  # separate projections: not convertible
    assert project_attention(blocks) == 1
    assert isinstance(blocks[0].attn, ProjectedAttention)
    assert isinstance(blocks[1].attn, nn.MultiheadAttention) and isinstance(blocks[2].attn, nn.MultiheadAttention)
    assert project_attention(blocks) == 0, "converting twice changes nothing"


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_every_precision_runs_the_projected_attention(weights, precision: str) -> None:
    encoder = ClipImageEncoder(SMALL_CLIP, weights, precision=precision, batch_size=5)
    assert not any(isinstance(m, nn.MultiheadAttention) for m in encoder.visual.modules())
    blocks = encoder.visual.transformer.resblocks
    assert all(isinstance(block.attn, ProjectedAttention) for block in blocks)


def test_int8_features_are_close_to_fp32(weights, frames: np.ndarray) -> None:
    fp32 = ClipImageEncoder(SMALL_CLIP, weights, precision="fp32", batch_size=5)
    int8 = ClipImageEncoder(SMALL_CLIP, weights, precision="int8", batch_size=5)
    linear = [m for m in int8.visual.modules() if type(m) is nn.Linear]
    quantized = [m for m in int8.visual.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert not linear and len(quantized) == 2 * 4, "attention and MLP projections of both blocks are int8"
    assert not any(isinstance(m, nn.MultiheadAttention) for m in int8.visual.modules())
    a, b = fp32.encode_snippets(frames, views=(0, 5)), int8.encode_snippets(frames, views=(0, 5))
    assert b.shape == a.shape and b.dtype == torch.float32
    cosine = nn.functional.cosine_similarity(a.flatten(0, 1), b.flatten(0, 1))
    assert cosine.min() >= 0.99, cosine
    assert not torch.equal(a, b), "int8 is not fp32 under another name"
    assert int8.precision == "int8"
    assert fp32.visual.transformer.resblocks[0].mlp.c_fc.weight.data_ptr() == \
        weights.state_dict["transformer.resblocks.0.mlp.c_fc.weight"].data_ptr(), "fp32 uses the weights in place"


def test_folding_quick_gelu_into_the_weights_computes_the_same_tower(weights) -> None:
    from workers.encode.clip_encoder import build_vision_tower

    tower = build_vision_tower(SMALL_CLIP["config"]).eval()
    tower.load_state_dict(weights.state_dict)
    before = {k: v.clone() for k, v in weights.state_dict.items()}
    x = torch.randn(4, 3, 64, 64)
    with torch.inference_mode():
        expected = tower(x)
    assert fold_quick_gelu(tower) == 2 and fold_quick_gelu(tower) == 0, "both MLPs, once"
    assert not any(type(m).__name__ == "QuickGELU" for m in tower.modules())
    with torch.inference_mode():
        got = tower(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert all(torch.equal(v, before[k]) for k, v in weights.state_dict.items()), "the shared weights are untouched"


def test_int8_folds_quick_gelu_and_leaves_the_shared_weights_alone(weights) -> None:
    before = {k: v.clone() for k, v in weights.state_dict.items()}
    int8 = ClipImageEncoder(SMALL_CLIP, weights, precision="int8", batch_size=5)
    assert all(isinstance(block.mlp.gelu, nn.SiLU) for block in int8.visual.transformer.resblocks)
    assert all(torch.equal(v, before[k]) for k, v in weights.state_dict.items())


def test_int8_is_refused_on_a_gpu_with_what_to_do(weights) -> None:
    with pytest.raises(ConfigurationError, match=r"int8 runs on the CPU only.*bf16 or fp16"):
        resolve_precision("int8", torch.device("cuda"))
    with pytest.raises(ConfigurationError, match="CPU only"):
        ClipImageEncoder(SMALL_CLIP, weights, device="cuda", precision="int8")
    with pytest.raises(ConfigurationError, match="unknown CLIP precision 'int4'"):
        resolve_precision("int4", torch.device("cpu"))


def test_the_setting_validates_and_reaches_the_result(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("VAD_CLIP_PRECISION", "int8")
    assert WorkerSettings().clip_precision == "int8"
    with pytest.raises(ValidationError, match="clip_precision"):
        WorkerSettings(clip_precision="int4")

    from workers.analyzer import Analyzer
    from workers.synthetic import make_video

    video = make_video(tmp_path / "v.mp4", duration_s=1.0, fps=16, size=(64, 48), seed=0)
    analyzer = Analyzer(tiny_bundle("ucf", seed=3), WorkerSettings(device="cpu", clip_precision="int8"))
    result = analyzer.analyze(video.path)
    assert result.settings.clip_precision == "int8"


def test_cpu_flags_of_the_first_cpu(tmp_path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx fma avx2 avx512_vnni\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "sse2", "avx", "fma", "avx2", "avx512_vnni"}
    assert cpu_flags(tmp_path / "absent") == frozenset()


def test_the_batch_size_is_the_devices_measured_default_unless_set(weights) -> None:
    from workers.encode.clip_encoder import DEFAULT_BATCH, default_batch_size

    assert ClipImageEncoder(SMALL_CLIP, weights).batch_size == DEFAULT_BATCH["cpu"] == 8
    assert default_batch_size(torch.device("cuda")) == 32 and default_batch_size(torch.device("mps")) == 8
    assert ClipImageEncoder(SMALL_CLIP, weights, batch_size=3).batch_size == 3
    assert WorkerSettings().batch_size is None
