"""The CLIP image encoder: parity with open_clip, batching, views, frame averaging, weight sources and errors."""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from model.clip_checkpoint import cached_checkpoint, visual_tensors
from tests.conftest import TINY_CLIP, tiny_bundle
from workers.encode.clip_encoder import ClipImageEncoder, build_vision_tower, resolve_precision
from workers.encode.clip_weights import load_checkpoint_file, resolve_clip_weights
from workers.exceptions import ClipWeightsError, ClipWeightsMissing
from workers.settings import WorkerSettings

pytestmark = pytest.mark.timeout(120)

# a tiny architecture under the name of the real one, to exercise open_clip's cache lookup without 350 MB files
TINY_AS_OPENAI = {"model_name": "ViT-B-16-quickgelu", "pretrained": "openai", "config": TINY_CLIP}


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle("ucf", seed=3)


@pytest.fixture(scope="module")
def encoder(bundle) -> ClipImageEncoder:
    return ClipImageEncoder.create(WorkerSettings(device="cpu", clip_precision="fp32", batch_size=4), bundle)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (6, 48, 80, 3), dtype=np.uint8)


def open_clip_model(bundle):
    import open_clip

    cfg = bundle.clip["config"]
    model = open_clip.model.CLIP(embed_dim=cfg["embed_dim"], vision_cfg=cfg["vision_cfg"], text_cfg=cfg["text_cfg"],
                                 quick_gelu=cfg["quick_gelu"])
    model.load_state_dict(bundle.clip_state_dict, strict=True)
    return model.eval()


def no_tower(bundle):
    return dataclasses.replace(bundle, clip_state_dict={k: v for k, v in bundle.clip_state_dict.items()
                                                         if not k.startswith("visual.")})


def test_features_equal_open_clips_encode_image(bundle, encoder: ClipImageEncoder, frames: np.ndarray) -> None:
    images = encoder.preprocess(torch.from_numpy(frames), views=(0, 5))
    with torch.inference_mode():
        expected = open_clip_model(bundle).encode_image(images.flatten(0, 1)).reshape(2, 6, -1)
    got = encoder.encode_snippets(frames, views=(0, 5))  # batch_size 4: three forward passes
    assert got.shape == (2, 6, 64) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert encoder.image_size == 32, "the input size comes from the bundle's CLIP config"
    assert (encoder.weights_source, encoder.name) == ("bundle", "custom/None")


def test_single_view_and_frame_averaging(encoder: ClipImageEncoder, frames: np.ndarray) -> None:
    both = encoder.encode_snippets(frames, views=(0, 5))
    torch.testing.assert_close(encoder.encode_snippets(frames, views=(5,))[0], both[1], rtol=1e-5, atol=1e-5)
    clips = frames.reshape(3, 2, 48, 80, 3)  # three "snippets" of two frames each
    mean = encoder.encode_snippets(clips, views=(0,))
    torch.testing.assert_close(mean[0], both[0].reshape(3, 2, -1).mean(dim=1), rtol=1e-5, atol=1e-5)


def test_cpu_auto_is_bf16_only_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import workers.encode.cpu as cpu

    for flags, expected in ((set(), "fp32"), ({"avx2", "fma"}, "fp32"), ({"avx512f", "avx512_vnni"}, "fp32"),
                            ({"avx512f", "avx512_bf16"}, "bf16"), ({"amx_tile", "amx_bf16"}, "bf16")):
        monkeypatch.setattr(cpu, "cpu_flags", lambda flags=flags: frozenset(flags))
        assert resolve_precision("auto", torch.device("cpu")) == expected, flags
        assert resolve_precision("fp32", torch.device("cpu")) == "fp32", "an explicit precision is kept"


def test_cpu_bf16_is_an_option_close_to_fp32(bundle, frames: np.ndarray, encoder: ClipImageEncoder) -> None:
    bf16 = ClipImageEncoder.create(WorkerSettings(device="cpu", clip_precision="bf16"), bundle)
    a, b = encoder.encode_snippets(frames)[0], bf16.encode_snippets(frames)[0]
    assert b.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.99


def test_weights_digest_is_the_same_from_every_source(bundle, encoder: ClipImageEncoder, tmp_path: Path) -> None:
    visual = {k: v for k, v in bundle.clip_state_dict.items() if k.startswith("visual.")}
    torch.save({"state_dict": {"module." + k: v for k, v in visual.items()}}, tmp_path / "wrapped.pt")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in bundle.clip_state_dict.items()}, str(tmp_path / "full.safetensors"))
    for name in ("wrapped.pt", "full.safetensors"):
        settings = WorkerSettings(clip_weights=tmp_path / name)
        weights = resolve_clip_weights(no_tower(bundle), settings, bundle.clip)
        assert (weights.source, weights.sha256) == ("file", encoder.weights_sha256)
    assert resolve_clip_weights(bundle, WorkerSettings(clip_weights=tmp_path / "full.safetensors",
                                                       clip_source="file"), bundle.clip).source == "file"


def test_openai_torchscript_archive_loads_without_pickle(bundle, tmp_path: Path) -> None:
    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.visual = build_vision_tower(TINY_CLIP)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.visual(x)

    wrapper = Wrapper()
    wrapper.visual.load_state_dict(visual_tensors(bundle.clip_state_dict))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(wrapper.eval(), torch.zeros(1, 3, 32, 32)).save(str(tmp_path / "ViT-B-16.pt"))
    loaded = visual_tensors(load_checkpoint_file(tmp_path / "ViT-B-16.pt"))
    assert loaded.keys() == visual_tensors(bundle.clip_state_dict).keys()
    assert all(torch.equal(loaded[k], v) for k, v in visual_tensors(bundle.clip_state_dict).items())


def test_open_clip_cache_is_found_locally(bundle, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    snapshot = tmp_path / "models--timm--vit_base_patch16_clip_224.openai" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    tensors = {k: v.contiguous() for k, v in bundle.clip_state_dict.items()}
    save_file(tensors, str(snapshot / "open_clip_model.safetensors"))
    found, _ = cached_checkpoint("ViT-B-16-quickgelu", "openai", tmp_path)
    assert found == snapshot / "open_clip_model.safetensors"
    tower_less = dataclasses.replace(no_tower(bundle), clip=TINY_AS_OPENAI)
    encoder = ClipImageEncoder.create(WorkerSettings(clip_cache_dir=tmp_path), tower_less)
    assert encoder.weights_source == "cache" and encoder.name == "ViT-B-16-quickgelu/openai"


def test_missing_weights_fail_fast_with_instructions(bundle, tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(ClipWeightsMissing) as info:
        ClipImageEncoder.create(WorkerSettings(clip_cache_dir=tmp_path), dataclasses.replace(no_tower(bundle),
                                                                                          clip=TINY_AS_OPENAI))
    assert time.monotonic() - start < 5, "the cache lookup must not wait on the network"
    message = str(info.value)
    for needed in ("ViT-B-16-quickgelu/openai", "the bundle carries no CLIP image tower", "vad import-checkpoint",
                   "VAD_CLIP_WEIGHTS=", "open_clip's cache", str(tmp_path)):
        assert needed in message
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(ClipWeightsMissing, match="clip_source='bundle'"):
        ClipImageEncoder.create(WorkerSettings(clip_source="bundle", clip_weights=tmp_path / "x.pt"), no_tower(bundle))
    with pytest.raises(ClipWeightsMissing, match="open_clip has no pretrained entry"):  # custom architecture
        ClipImageEncoder.create(WorkerSettings(), no_tower(bundle))


def test_unusable_weight_files(bundle, tmp_path: Path) -> None:
    (tmp_path / "text.pt").write_text("not a checkpoint")
    torch.save({"token_embedding.weight": torch.zeros(2, 2)}, tmp_path / "text_only.pt")
    torch.save({"visual.proj": torch.zeros(3, 3)}, tmp_path / "wrong.pt")
    for name, match in [("missing.pt", "not found"), ("text.pt", "not a readable CLIP checkpoint"),
                        ("text_only.pt", "no CLIP image tower"), ("wrong.pt", "do not fit")]:
        with pytest.raises(ClipWeightsError, match=match):
            ClipImageEncoder.create(WorkerSettings(clip_weights=tmp_path / name), no_tower(bundle))


def test_real_architecture_random_weights_builds_from_the_default_identity(tmp_path: Path) -> None:
    from model.bundle import OPENAI_VIT_B_16

    tower = build_vision_tower(OPENAI_VIT_B_16["config"])
    torch.save({"visual." + k: v for k, v in tower.state_dict().items()}, tmp_path / "vitb16.pt")
    encoder = ClipImageEncoder.create(WorkerSettings(clip_weights=tmp_path / "vitb16.pt"))
    assert (encoder.name, encoder.image_size, encoder.embed_dim) == ("ViT-B-16-quickgelu/openai", 224, 512)
    assert encoder.clip == OPENAI_VIT_B_16
