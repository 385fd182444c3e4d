"""Tokenizer and text branch."""

from __future__ import annotations

import json

import pytest
import torch

from model.config import load_preset
from model.text import build_text_tower, mix_adapter, tokenize
from tests.conftest import FIXTURES, tiny_config


@pytest.mark.parametrize("dataset", ["ucf", "xd"])
def test_tokenizer_matches_the_official_token_ids(dataset: str) -> None:
    reference = json.loads((FIXTURES / "class_descriptions.json").read_text())[dataset]
    cfg = load_preset(dataset)
    assert cfg.class_names == reference["class_order"]
    for spec in cfg.classes:
        assert list(spec.descriptions) == reference["descriptions"][spec.name]
        tokens = tokenize(spec.descriptions)
        for row, expected in zip(tokens, reference["token_ids"][spec.name], strict=True):
            assert row[: len(expected)].tolist() == expected
            assert row[len(expected):].abs().sum() == 0  # zero padded to 77
            assert row.argmax().item() == len(expected) - 1  # EOT is the argmax


def test_adapter_mixing_rescales_to_the_token_norm() -> None:
    x = torch.tensor([[3.0, 4.0]])  # norm 5
    adapted = torch.tensor([[0.0, 2.0]])  # norm 2 → rescaled to [0, 5·2/(2+1e-6)]
    out = mix_adapter(x, adapted, weight=0.1)
    expected = 0.1 * torch.tensor([[0.0, 10.0 / (2 + 1e-6)]]) + 0.9 * x
    torch.testing.assert_close(out, expected)


def test_text_branch_without_adapters_equals_open_clip_pooling() -> None:
    """With no adapters, our block loop + EOT pooling must equal open_clip's own text forward."""
    torch.manual_seed(0)
    cfg = tiny_config("xd").replace(text_adapt_until=0)
    from model.factory import create_model

    model = create_model(cfg, with_text_tower=True)
    tower = model.text_encoder.tower
    tower.text_projection = None  # open_clip then returns the pooled ln_final output
    with torch.no_grad():
        pooled = tower(model.text_encoder.tokens)
        final = model.text_encoder.text_adapter[0](pooled)
        ours = model.text_encoder()
    torch.testing.assert_close(ours, torch.nn.functional.normalize(final, dim=-1))


def test_adapters_change_the_text_features_and_outputs_are_unit_vectors(preset: str) -> None:
    torch.manual_seed(0)
    from model.factory import create_model

    model = create_model(tiny_config(preset), with_text_tower=True)
    with torch.no_grad():
        t = model.text_encoder()
        assert t.shape == (model.cfg.num_classes, model.cfg.visual_width)
        torch.testing.assert_close(t.norm(dim=-1), torch.ones(len(t)))
        model.text_encoder.mix_weight = 0.0  # adapters then contribute nothing inside the tower
        assert not torch.allclose(model.text_encoder(), t)


def test_text_features_under_half_precision_autocast() -> None:
    """Training with ``--amp bf16`` runs the text branch under autocast: the class means must still be computed.

    Found on an H100 (tests/gpu): the adapter's bf16 output was summed into a float32 tensor and index_add_ refused
    it. CPU autocast takes the same path, so this runs everywhere.
    """
    torch.manual_seed(0)
    from model.factory import create_model

    model = create_model(tiny_config("ucf"), with_text_tower=True)
    with torch.no_grad():
        reference = model.text_encoder()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model.text_encoder()
    assert half.dtype == torch.float32 and half.shape == reference.shape
    assert float(torch.nn.functional.cosine_similarity(half, reference).min()) > 0.99


def test_text_tower_has_openai_key_names() -> None:
    keys = set(build_text_tower(load_preset("ucf").text).state_dict())
    assert {"token_embedding.weight", "positional_embedding", "ln_final.weight", "text_projection",
            "transformer.resblocks.11.mlp.c_proj.weight"} <= keys
