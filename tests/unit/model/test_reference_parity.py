"""Our vectorised DSANet against the independent loop-by-loop oracle in tests/reference.

The oracle was written from the spec alone, consumes the authors' key layout directly, and
builds its own CLIP text transformer; the weights reach our model through the real importer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import DSANetConfig
from model.factory import create_model
from model.inference import DSANetPredictor
from model.official import import_official_checkpoint
from tests.conftest import TINY_CLIP, random_clip_state_dict, tiny_config
from tests.reference.naive_dsanet import (
    RefHParams,
    load_class_tokens,
    reference_forward,
    reference_test_scores,
)
from tests.reference.random_weights import make_random_features, make_random_official_state_dict


def _hparams(cfg: DSANetConfig) -> RefHParams:
    return RefHParams(attn_window=cfg.attn_window, text_adapt_until=cfg.text_adapt_until,
                      text_mix_weight=cfg.text_mix_weight, test_temperature=cfg.test_temperature,
                      visual_heads=cfg.visual_heads, text_heads=cfg.text.heads, sgnm_heads=cfg.sgnm.heads)


def _official_checkpoint(cfg: DSANetConfig, clip_config: dict, seed: int) -> dict[str, torch.Tensor]:
    text = clip_config["text_cfg"]
    sd = make_random_official_state_dict(
        D=cfg.visual_width, text_width=text["width"], text_layers=text["layers"], text_heads=text["heads"],
        vocab=text["vocab_size"], context=text["context_length"], temporal_layers=cfg.visual_layers,
        text_adapt_until=cfg.text_adapt_until, num_prototypes=cfg.sgnm.num_prototypes,
        decoder_depth=cfg.sgnm.decoder_depth, T=cfg.visual_length, seed=seed, sgnm_heads=cfg.sgnm.heads)
    visual = {k: v for k, v in random_clip_state_dict(clip_config, seed).items() if k.startswith("visual.")}
    for prefix in ("clipmodel.", "clip_adapter.clipmodel."):
        sd.update({prefix + k: v for k, v in visual.items()})
    return sd


@pytest.fixture(scope="module", params=["ucf", "xd"])
def imported(request, tmp_path_factory):
    cfg = tiny_config(request.param)
    sd = _official_checkpoint(cfg, TINY_CLIP, seed=21)
    path = tmp_path_factory.mktemp("ckpt") / "official.pth"
    torch.save(sd, path)
    bundle = import_official_checkpoint(path, cfg, TINY_CLIP)
    return request.param, cfg, sd, bundle


def test_forward_matches_the_oracle_in_float64(imported) -> None:
    preset, cfg, sd, bundle = imported
    tokens = load_class_tokens(preset)
    model = create_model(cfg, bundle, with_text_tower=True)
    from model.factory import load_clip_text_weights

    load_clip_text_weights(model, bundle.clip_state_dict)
    model = model.double()
    sd64 = {k: v.double() for k, v in sd.items()}
    lengths = [256, 137, 3]
    feats = torch.zeros(3, 256, cfg.visual_width, dtype=torch.float64)
    for b, n in enumerate(lengths):
        feats[b, :n] = make_random_features(n, cfg.visual_width, seed=b).double()
    expected = reference_forward(sd64, feats, lengths, tokens, _hparams(cfg), with_sgnm=True)
    with torch.no_grad():
        out = model(feats, torch.tensor(lengths), with_sgnm=True)
    pairs = {"text_features": out.text_features, "logits1": out.logits1, "logits2": out.logits2,
             "logits3": out.logits3, "logits4": out.logits4, "v": out.visual,
             "reconstructed": out.sgnm.reconstructed, "g_loss": out.sgnm.g_loss}
    for name, ours in pairs.items():
        torch.testing.assert_close(ours, expected[name], rtol=1e-9, atol=1e-9, msg=f"{preset}: {name}")
    # The stored text features (computed in float32 at import) agree with the oracle's too.
    torch.testing.assert_close(bundle.text_features.double(), expected["text_features"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("n", [1, 255, 256, 257, 512, 1000])
def test_test_scores_match_the_oracle_within_1e5_in_float32(imported, n: int) -> None:
    preset, cfg, sd, bundle = imported
    feats = make_random_features(n, cfg.visual_width, seed=n)
    scores = DSANetPredictor(bundle).score(feats.numpy())
    ref_anomaly, ref_probs = reference_test_scores({k: v.double() for k, v in sd.items()}, feats.double(),
                                                   load_class_tokens(preset), _hparams(cfg))
    np.testing.assert_allclose(scores.anomaly, ref_anomaly.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(scores.class_probs, ref_probs.numpy(), rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["ucf", "xd"])
def test_full_size_test_scores_match_the_oracle(tmp_path: Path, preset: str) -> None:
    """The released architecture (D = 512, 12-layer CLIP text tower), weights through the importer."""
    from model.bundle import OPENAI_VIT_B_16
    from model.config import load_preset

    cfg = load_preset(preset)
    sd = _official_checkpoint(cfg, OPENAI_VIT_B_16["config"], seed=5)
    torch.save(sd, tmp_path / f"model_{preset}.pth")
    bundle = import_official_checkpoint(tmp_path / f"model_{preset}.pth", preset)
    feats = make_random_features(300, 512, seed=9)
    scores = DSANetPredictor(bundle).score(feats.numpy())
    ref_anomaly, ref_probs = reference_test_scores(sd, feats, load_class_tokens(preset), _hparams(cfg))
    np.testing.assert_allclose(scores.anomaly, ref_anomaly.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(scores.class_probs, ref_probs.numpy(), rtol=0, atol=1e-5)
