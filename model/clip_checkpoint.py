"""Reading a local CLIP checkpoint file safely: one loader for training (text tower) and workers (image tower).

Accepted: OpenAI's released ``ViT-B-16.pt`` (a TorchScript archive: ``torch.jit.load`` restores
TorchScript modules and tensors, not arbitrary Python objects), open_clip's
``open_clip_pytorch_model.bin`` (read with ``torch.load(weights_only=True)``), ``.safetensors``, and
plain state dicts, optionally wrapped in ``{"state_dict": ...}`` or ``module.``-prefixed.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from model.exceptions import CheckpointError, WeightsNotFoundError, first_line


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
