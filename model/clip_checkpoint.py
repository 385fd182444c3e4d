"""Reading a local CLIP checkpoint file safely: one loader for training (text tower) and workers (image tower).

Accepted: OpenAI's released ``ViT-B-16.pt`` (a TorchScript archive: ``torch.jit.load`` restores
TorchScript modules and tensors, not arbitrary Python objects), open_clip's
``open_clip_pytorch_model.bin`` (read with ``torch.load(weights_only=True)``), ``.safetensors``, and
plain state dicts, optionally wrapped in ``{"state_dict": ...}`` or ``module.``-prefixed.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from model.exceptions import CheckpointError, WeightsNotFoundError, first_line

VISUAL_PREFIX = "visual."  # the image tower's keys in OpenAI naming
TEXT_TOWER_KEY = "token_embedding.weight"  # present exactly when a state dict carries the text tower


def visual_tensors(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The ``visual.*`` entries of an OpenAI-named CLIP state dict, prefix removed (empty: no image tower)."""
    return {k.removeprefix(VISUAL_PREFIX): v for k, v in state_dict.items() if k.startswith(VISUAL_PREFIX)}


def has_image_tower(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether an OpenAI-named CLIP state dict carries the image tower."""
    return any(k.startswith(VISUAL_PREFIX) for k in state_dict)


def has_text_tower(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether an OpenAI-named CLIP state dict carries the text tower."""
    return TEXT_TOWER_KEY in state_dict


def read_clip_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The full OpenAI-named state dict of a local CLIP checkpoint (float tensors as stored).

    Raises:
        WeightsNotFoundError: The file does not exist.
        CheckpointError: The file is not a readable checkpoint or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"CLIP weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        return _unwrap(_load(path))
    except CheckpointError:
        raise
    except Exception as exc:  # torch and safetensors raise many types for foreign or damaged files
        raise CheckpointError(f"{path} is not a readable CLIP checkpoint: {first_line(exc, 300)}") from exc


def _load(path: Path) -> Any:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("constants.pkl") for name in archive.namelist()):  # TorchScript archive
                with warnings.catch_warnings():  # torch.jit is deprecated, but it is the format OpenAI released
                    warnings.simplefilter("ignore", FutureWarning)
                    return torch.jit.load(str(path), map_location="cpu").state_dict()
    return torch.load(path, map_location="cpu", weights_only=True)


def _unwrap(checkpoint: Any) -> dict[str, Tensor]:
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"expected a state dict, found a {type(checkpoint).__name__}")
    return {k.removeprefix("module."): v for k, v in checkpoint.items() if isinstance(v, Tensor)}


def cached_checkpoint(model_name: str, pretrained: str | None, cache_dir: Path | None = None
                      ) -> tuple[Path | None, list[str]]:
    """open_clip's cached file for ``model_name``/``pretrained``, looked up locally (never downloaded): the Hugging
    Face hub cache, then open_clip's URL cache (``~/.cache/clip``), or ``cache_dir`` for both.

    Returns:
        The file, or ``None``, and the places looked at (for the error message).
    """
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name, pretrained) if pretrained else {}
    looked: list[str] = []
    if not cfg:
        return None, looked
    candidates: list[Path] = [Path(cfg["file"])] if cfg.get("file") else []
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        repo, filename = os.path.split(cfg["hf_hub"])
        names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
        for name in names:
            looked.append(f"hf://{repo}/{name}")
            found = try_to_load_from_cache(repo, name, cache_dir=str(cache_dir) if cache_dir else None)
            if isinstance(found, str):
                candidates.append(Path(found))
    if cfg.get("url"):
        url_cache = cache_dir or Path("~/.cache/clip").expanduser()
        candidates.append(url_cache / os.path.basename(cfg["url"]))
        looked.append(str(candidates[-1]))
    return next((p for p in candidates if p.is_file()), None), looked
