"""Where a training run's CLIP text tower comes from, and the model it trains.

Training recomputes the class text features every step (spec C.4), so it needs the frozen CLIP text
transformer with its pretrained weights. They come from a local open_clip/OpenAI-named state-dict file, from
a bundle made by ``vad import-checkpoint`` (which carries the CLIP towers), or, for synthetic demos only,
from a random initialisation (the resulting bundle is marked ``demo``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from model.bundle import OPENAI_VIT_B_16, Bundle, tensors_sha256
from model.config import DSANetConfig, TextTowerConfig
from model.exceptions import TrainingError
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
    """Read a CLIP state dict safely (``weights_only=True``); ``state_dict``/``module.`` wrappers are unwrapped.

    Raises:
        TrainingError: The file is missing, is a TorchScript archive, or holds no CLIP text tower.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"CLIP weights not found: {path}; {HOW_TO_GET_CLIP}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        else:
            with warnings.catch_warnings():  # torch warns about TorchScript archives before refusing them
                warnings.simplefilter("ignore", UserWarning)
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types; TorchScript archives refuse weights_only
        raise TrainingError(f"{path} could not be read as a CLIP state dict with weights_only=True ({exc}). OpenAI's "
                            "TorchScript ViT-B-16.pt must first be converted to a plain state dict: "
                            f"{HOW_TO_GET_CLIP}") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or "token_embedding.weight" not in {k.removeprefix("module.") for k in obj}:
        raise TrainingError(f"{path} holds no OpenAI-named CLIP text tower (no token_embedding.weight); "
                            f"{HOW_TO_GET_CLIP}")
    state = {k.removeprefix("module."): v.float() for k, v in obj.items() if isinstance(v, Tensor)}
    return ClipSource(state, _identity(cfg.text, f"file:{path.name}"), f"file {path.name}")


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
