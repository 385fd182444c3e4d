"""Where a training run's CLIP text tower comes from, and the model it trains.

Training recomputes the class text features every step (spec C.4), so it needs the frozen CLIP text
transformer with its pretrained weights. They come from a local open_clip/OpenAI-named state-dict file, from
a bundle made by ``vad import-checkpoint`` (which carries the CLIP towers), or, for synthetic demos only,
from a random initialisation (the resulting bundle is marked ``demo``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from model.bundle import OPENAI_VIT_B_16, Bundle, tensors_sha256
from model.clip_checkpoint import TEXT_TOWER_KEY, has_text_tower, read_clip_checkpoint
from model.config import DSANetConfig, TextTowerConfig
from model.exceptions import ModelError, TrainingError
from model.factory import TEXT_TOWER_PREFIXES, create_model, load_clip_text_weights
from model.network import DSANet
from model.text import build_text_tower

TOWER_PREFIX = "clip_adapter.tower."
HOW_TO_GET_CLIP = (
    "pass --clip-weights FILE (an OpenAI-named CLIP ViT-B/16 state dict, e.g. open_clip's "
    "`torch.save(open_clip.create_model('ViT-B-16-quickgelu', pretrained='openai').state_dict(), 'clip.pt')`) "
    "or --init-bundle BUNDLE (a bundle made by `vad import-checkpoint`, which carries CLIP); "
    "--random-clip trains with a random text tower and is only meant for synthetic demos"
)


@dataclass(frozen=True)
class ClipSource:
    """CLIP weights for training.

    Attributes:
        state_dict: OpenAI-named CLIP tensors (at least the text tower; the image tower when available).
        identity: The bundle's ``clip`` record (open_clip model name, pretrained tag, architecture).
        description: Where the weights came from, for the bundle's ``source``.
        random: The text tower is randomly initialised (demo only).
    """

    state_dict: dict[str, Tensor]
    identity: dict[str, Any]
    description: str
    random: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def text_sha256(self) -> str:
        return tensors_sha256({k: v for k, v in self.state_dict.items() if k.startswith(TEXT_TOWER_PREFIXES)})


def _identity(text: TextTowerConfig, pretrained: str | None) -> dict[str, Any]:
    if text == TextTowerConfig():
        return dict(OPENAI_VIT_B_16, pretrained=pretrained)
    text_cfg = {"context_length": text.context_length, "vocab_size": text.vocab_size, "width": text.width,
                "heads": text.heads, "layers": text.layers}
    return {"model_name": "custom", "pretrained": pretrained, "config": {"text_cfg": text_cfg}}


def clip_from_file(path: str | Path, cfg: DSANetConfig) -> ClipSource:
    """Read a local CLIP checkpoint safely (see :func:`model.clip_checkpoint.read_clip_checkpoint`).

    Raises:
        TrainingError: The file is missing, unreadable, or holds no CLIP text tower.
    """
    try:
        state_dict = read_clip_checkpoint(path)
    except ModelError as exc:
        raise TrainingError(f"{exc}; {HOW_TO_GET_CLIP}") from exc
    if not has_text_tower(state_dict):
        raise TrainingError(f"{path} holds no OpenAI-named CLIP text tower (no {TEXT_TOWER_KEY}); "
                            f"{HOW_TO_GET_CLIP}")
    state = {k: v.float() for k, v in state_dict.items()}
    return ClipSource(state, _identity(cfg.text, f"file:{Path(path).name}"), f"file {Path(path).name}")


def clip_from_bundle(bundle: Bundle) -> ClipSource:
    """The CLIP weights a bundle carries (e.g. an imported official one)."""
    if not bundle.has_text_tower:
        raise TrainingError(f"the bundle carries no CLIP text tower; {HOW_TO_GET_CLIP}")
    return ClipSource(dict(bundle.clip_state_dict), dict(bundle.clip), f"bundle {bundle.sha256 or ''}".strip())


def random_clip(cfg: DSANetConfig, seed: int) -> ClipSource:
    """A randomly initialised text tower (seeded): for synthetic demos and tests only."""
    torch.manual_seed(seed)
    state = {k: v.detach().clone() for k, v in build_text_tower(cfg.text).state_dict().items()}
    identity = _identity(cfg.text, None)
    return ClipSource(state, dict(identity, random=True), "random CLIP text tower (demo only)", random=True)


def build_training_model(
    cfg: DSANetConfig, clip: ClipSource, seed: int, init: Bundle | None = None
) -> DSANet:
    """A model ready to train: seeded initialisation (spec C.9), frozen CLIP text tower loaded from ``clip``.

    Args:
        cfg: The architecture and training preset.
        clip: The CLIP weights.
        seed: Seeds the initialisation.
        init: Start from this bundle's DSANet weights (fine-tuning); its architecture must match ``cfg``.
    """
    torch.manual_seed(seed)
    model = create_model(cfg, with_text_tower=True)
    if init is not None:
        try:
            result = model.load_state_dict(init.state_dict, strict=False)
        except RuntimeError as exc:
            raise TrainingError(f"the bundle's DSANet weights do not fit this preset's architecture: {exc}") from exc
        missing = [k for k in result.missing_keys if not k.startswith(TOWER_PREFIX)]
        if missing or result.unexpected_keys:
            raise TrainingError(f"the bundle's DSANet weights do not fit this preset: missing {missing[:5]}, "
                                f"unexpected {result.unexpected_keys[:5]}")
    try:
        load_clip_text_weights(model, clip.state_dict)
    except RuntimeError as exc:
        raise TrainingError(f"the CLIP weights ({clip.description}) do not fit the preset's text tower: {exc}") from exc
    return model
