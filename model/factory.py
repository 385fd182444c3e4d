"""One factory for DSANet models: from a preset, a config or a bundle."""

from __future__ import annotations

from pathlib import Path

import torch

from model.bundle import Bundle, load_bundle
from model.config import DSANetConfig, load_preset
from model.exceptions import BundleError
from model.network import DSANet
from model.text import build_text_tower, class_tokens
from model.weights import build_with_weights

TEXT_TOWER_PREFIXES = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")


def resolve_config(preset_or_config: str | Path | DSANetConfig) -> DSANetConfig:
    """A config from a preset name, a preset JSON path, or a config (returned as is)."""
    if isinstance(preset_or_config, DSANetConfig):
        return preset_or_config
    return load_preset(preset_or_config)


def create_model(
    preset_or_config: str | Path | DSANetConfig,
    checkpoint: str | Path | Bundle | None = None,
    *,
    with_text_tower: bool = False,
) -> DSANet:
    """Build DSANet.

    Args:
        preset_or_config: ``"ucf"``, ``"xd"``, a preset JSON path or a :class:`DSANetConfig`.
            Ignored in favour of the bundle's own config when ``checkpoint`` is given.
        checkpoint: a bundle (path or loaded) whose weights are loaded strictly. ``None`` gives a
            freshly initialised model (for training).
        with_text_tower: attach a CLIP text tower (needed to recompute text features, i.e. for
            training). With a checkpoint, its CLIP text weights are loaded into the tower; a
            bundle without them is an error. Without a checkpoint the tower is randomly
            initialised: load pretrained CLIP weights with :func:`load_clip_text_weights`.

    Returns:
        The model in eval mode on the CPU, in float32.
    """
    bundle = load_bundle(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint
    cfg = bundle.config if bundle is not None else resolve_config(preset_or_config)
    tokens, class_index = class_tokens(cfg)
    if bundle is not None:  # the bundle's tensors become the parameters: no copy, no random initialisation
        model = build_with_weights(lambda: DSANet(cfg, tokens, class_index), bundle.state_dict)
    else:
        model = DSANet(cfg, tokens, class_index)
    if with_text_tower:
        model.text_encoder.attach_tower(build_text_tower(cfg.text))
        if bundle is not None:
            if not bundle.has_text_tower:
                raise BundleError("this bundle carries no CLIP text tower, so its text features cannot be "
                                  "recomputed; use its stored text_features or a bundle made by import-checkpoint")
            load_clip_text_weights(model, bundle.clip_state_dict)
    return model.eval()


def load_clip_text_weights(model: DSANet, clip_state_dict: dict[str, torch.Tensor]) -> None:
    """Load the text-tower part of an OpenAI-named CLIP state dict into the attached tower (strict)."""
    tower = model.text_encoder.tower
    if tower is None:
        raise RuntimeError("attach a text tower first (create_model(..., with_text_tower=True))")
    text_sd = {k: v for k, v in clip_state_dict.items() if k.startswith(TEXT_TOWER_PREFIXES)}
    tower.load_state_dict(text_sd, strict=True)


def bundle_from_model(
    model: DSANet,
    clip_state_dict: dict[str, torch.Tensor] | None = None,
    *,
    text_features: torch.Tensor | None = None,
    clip: dict | None = None,
    source: dict | None = None,
    demo: bool = False,
) -> Bundle:
    """Package a model as a :class:`Bundle`.

    The text features are computed with the attached text tower unless given. The tower's own
    weights are not part of the DSANet weights; pass them (and the image tower's) in
    ``clip_state_dict`` under OpenAI names.
    """
    from model.bundle import OPENAI_VIT_B_16

    if text_features is None:
        with torch.inference_mode():
            text_features = model.eval().text_encoder().detach().clone()
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()
             if not k.startswith("clip_adapter.tower.")}
    return Bundle(
        config=model.cfg,
        state_dict=state,
        text_features=text_features.detach().cpu().float(),
        clip_state_dict=dict(clip_state_dict or {}),
        clip=dict(clip or OPENAI_VIT_B_16),
        source=dict(source or {}),
        demo=demo,
    )
