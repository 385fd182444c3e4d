"""The DSANet forward pass: heads, pooling, SGNM independence, shapes.

Every output against an independent implementation is in test_reference_parity.py (the loop-by-loop oracle of
tests/reference, float64, both presets).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from model.factory import create_model
from model.network import DSANet
from tests.conftest import tiny_config


def _model(preset: str, seed: int = 0) -> DSANet:
    torch.manual_seed(seed)
    return create_model(tiny_config(preset), with_text_tower=True)


def _inputs(model: DSANet, lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), model.cfg.visual_length, model.cfg.visual_width, generator=g)
    for b, n in enumerate(lengths):
        x[b, n:] = 0.0
    return x, torch.tensor(lengths)


def test_pooled_logits_follow_the_event_and_background_weights(preset: str) -> None:
    model = _model(preset)
    x, lengths = _inputs(model, [256, 40])
    with torch.no_grad():
        out = model(x, lengths)
        t = out.text_features
        for b in range(2):
            p = torch.sigmoid(out.logits1[b, :, 0]).double()
            w_evt = torch.exp(10 * p) - 1
            w_bkg = torch.exp(10 * (1 - p)) - 1
            for w, logits in ((w_evt, out.logits3), (w_bkg, out.logits4)):
                pooled = ((w / w.sum())[:, None] * out.visual[b].double()).sum(0)  # all 256 rows, padding included
                cosines = [F.cosine_similarity(pooled, t[c].double(), dim=0) for c in range(len(t))]
                expected = torch.stack(cosines) / 0.07
                torch.testing.assert_close(logits[b, 0].double(), expected, rtol=1e-5, atol=1e-5)


def test_logits2_uses_raw_logits_as_visual_prompt_weights(preset: str) -> None:
    model = _model(preset)
    x, lengths = _inputs(model, [100])
    with torch.no_grad():
        out = model(x, lengths)
        v, l1, t = out.visual[0], out.logits1[0, :, 0], out.text_features
        prompt = (l1[:, None] * v).sum(0)
        prompt = prompt / prompt.norm()
        for c in (0, len(t) - 1):
            tc = t[c] + prompt
            tc = tc + model.mlp1(tc)
            expected = F.cosine_similarity(v, tc[None], dim=-1) / 0.07
            torch.testing.assert_close(out.logits2[0, :, c], expected, rtol=1e-5, atol=1e-5)


def test_logits1_is_the_coarse_head() -> None:
    model = _model("ucf")
    x, lengths = _inputs(model, [77])
    with torch.no_grad():
        out = model(x, lengths)
        v = out.visual
        expected = v @ model.classifier.weight.T + model.classifier.bias + model.mlp2(v) @ model.classifier.weight.T
    torch.testing.assert_close(out.logits1, expected, rtol=1e-5, atol=1e-5)


def test_sgnm_does_not_change_inference_outputs(preset: str) -> None:
    model = _model(preset)
    x, lengths = _inputs(model, [256, 10])
    with torch.no_grad():
        plain = model(x, lengths)
        with_sgnm = model(x, lengths, with_sgnm=True)
    for name in ("text_features", "logits1", "logits2", "logits3", "logits4", "visual"):
        assert torch.equal(getattr(plain, name), getattr(with_sgnm, name)), name
    assert plain.sgnm is None and with_sgnm.sgnm is not None
    sg = with_sgnm.sgnm
    assert sg.reconstructed.shape == x.shape
    assert sg.prototypes.shape == (2, model.cfg.sgnm.num_prototypes, model.cfg.visual_width)
    assert sg.g_loss.ndim == 0 and 0.0 <= sg.g_loss.item() <= 2.0


def test_sgnm_decoder_attention_has_no_residual() -> None:
    model = _model("xd")
    block = model.video_anomaly_refiner.decoder[0]
    z, protos = torch.randn(1, 256, 64), torch.randn(1, 4, 64)
    with torch.no_grad():
        y = block.attn(block.norm1(z), block.norm1(protos))
        torch.testing.assert_close(block(z, protos), y + block.mlp(block.norm2(y)))


def test_sgnm_compactness_loss_and_normal_selection() -> None:
    model = _model("ucf")
    sgnm = model.video_anomaly_refiner
    assert sgnm.num_normal == int(256 * 0.8) == 204
    v = torch.randn(1, 256, 64)
    logits1 = torch.randn(1, 256, 1)
    with torch.no_grad():
        out = sgnm(v, logits1)
        normal_idx = torch.sigmoid(logits1[0, :, 0]).argsort()[:204]
        s = v[0, normal_idx]
        cos = F.normalize(s, dim=-1) @ F.normalize(out.prototypes[0], dim=-1).T
        expected = (1 - cos).min(dim=1).values.mean()
    torch.testing.assert_close(out.g_loss, expected)


def test_only_the_similarity_graph_sees_the_valid_length() -> None:
    """Same padded input, different declared lengths: outputs differ (graph restricted to L)."""
    model = _model("ucf")
    x, _ = _inputs(model, [50])
    with torch.no_grad():
        a = model(x, torch.tensor([50])).logits1
        b = model(x, torch.tensor([60])).logits1
    assert not torch.allclose(a, b)


def test_zero_padding_changes_valid_outputs() -> None:
    """Spec C.8: padded rows take part (attention windows, conv residual, distance graph)."""
    model = _model("xd")
    x, lengths = _inputs(model, [100])
    shifted = x.clone()
    shifted[0, 100:] = 1e-3  # same valid rows, different padding
    with torch.no_grad():
        assert not torch.allclose(model(x, lengths).logits1[0, :100], model(shifted, lengths).logits1[0, :100])


def test_gradients_flow_to_trainable_parts_only() -> None:
    model = _model("ucf").train()
    x, lengths = _inputs(model, [256, 30])
    out = model(x, lengths, with_sgnm=True)
    loss = out.logits1.sum() + out.logits2.sum() + out.logits3.sum() + out.sgnm.g_loss + out.sgnm.reconstructed.sum()
    loss.backward()
    assert model.clip_adapter.text_adapter[0].fc[0].weight.grad is not None
    assert model.video_anomaly_refiner.video_prototypes.grad is not None
    assert all(p.grad is None for p in model.text_encoder.tower.parameters())  # CLIP stays frozen


@pytest.mark.slow
def test_full_size_presets_shapes_and_parameter_counts(preset: str) -> None:
    model = create_model(preset, with_text_tower=True)
    counts = {"ucf": 44_130_881, "xd": 40_454_209}  # spec F minus the unused disAdj.sigma
    own = sum(v.numel() for k, v in model.state_dict().items() if not k.startswith("clip_adapter.tower."))
    assert own == counts[preset]
    assert sum(p.numel() for p in model.video_anomaly_refiner.parameters()) == 30_479_424
    x = torch.randn(2, 256, 512)
    with torch.no_grad():
        out = model(x, torch.tensor([256, 17]), with_sgnm=True)
    c = model.cfg.num_classes
    assert c == {"ucf": 14, "xd": 7}[preset]
    expected = {"text_features": (c, 512), "logits1": (2, 256, 1), "logits2": (2, 256, c), "logits3": (2, 1, c),
                "logits4": (2, 1, c), "visual": (2, 256, 512)}
    for name, shape in expected.items():
        tensor = getattr(out, name)
        assert tuple(tensor.shape) == shape and tensor.dtype == torch.float32, name
        assert torch.isfinite(tensor).all(), name
    assert math.isfinite(out.sgnm.g_loss.item())
