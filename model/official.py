"""Import (and export) the authors' released DSANet checkpoints (spec F).

The official ``model_ucf.pth`` / ``model_xd.pth`` are flat ``state_dict`` files holding the
DSANet parameters plus the frozen CLIP ViT-B/16 twice, under ``clipmodel.*`` and under the alias
``clip_adapter.clipmodel.*``. The DSANet parameter names are identical to ours, so the mapping
is: DSANet keys → the bundle's DSANet weights, ``clipmodel.*`` → the bundle's CLIP weights (one
copy, checked against the alias), ``disAdj.sigma`` → dropped (an unused parameter).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from model.bundle import OPENAI_VIT_B_16, Bundle
from model.config import DSANetConfig
from model.exceptions import CheckpointError
from model.factory import create_model, load_clip_text_weights, resolve_config
from model.text import build_text_tower

CLIP_PREFIX = "clipmodel."
CLIP_ALIAS_PREFIX = "clip_adapter.clipmodel."
UNUSED_KEYS = ("disAdj.sigma",)
_MAX_LISTED = 12


@dataclass(frozen=True)
class ExpectedLayout:
    """Names and shapes an official checkpoint of one config must have."""

    dsanet: dict[str, tuple[int, ...]]
    clip: dict[str, tuple[int, ...]]


def expected_layout(cfg: DSANetConfig, clip_config: Mapping | None = None) -> ExpectedLayout:
    """Shapes of every key, from modules built on the meta device (no memory, no weights)."""
    import open_clip

    clip_cfg: dict[str, Any] = dict(clip_config or OPENAI_VIT_B_16["config"])
    with torch.device("meta"):
        model = create_model(cfg)
        clip = open_clip.model.CLIP(
            embed_dim=clip_cfg["embed_dim"], vision_cfg=clip_cfg["vision_cfg"], text_cfg=clip_cfg["text_cfg"],
            quick_gelu=clip_cfg.get("quick_gelu", True),
        )
    dsanet = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return ExpectedLayout(dsanet=dsanet, clip={k: tuple(v.shape) for k, v in clip.state_dict().items()})


def read_official_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Read an official ``.pth`` safely (``weights_only=True``) and unwrap/strip wrappers.

    Accepts the released flat state dict, the training ``checkpoint.pth`` (``model_state_dict``
    inside) and ``module.``-prefixed keys from ``DataParallel``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f"{path} could not be read as a PyTorch state dict (weights_only): {exc}") from exc
    if isinstance(obj, Mapping) and "model_state_dict" in obj:
        obj = obj["model_state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a flat state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def detect_preset(state_dict: Mapping[str, Tensor]) -> str | None:
    """``"ucf"`` or ``"xd"`` from the checkpoint's structure (spec F), or ``None`` if neither fits."""
    two_layers = "temporal.resblocks.1.ln_1.weight" in state_dict
    adapters = sum(1 for k in state_dict if k.startswith("clip_adapter.text_adapter."))
    if two_layers and adapters == 4:
        return "ucf"
    if not two_layers and adapters == 2:
        return "xd"
    return None


def _listing(title: str, items: list[str]) -> str:
    more = f", … ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    shown = ", ".join(items[:_MAX_LISTED]) + more
    return f"{len(items)} {title}: {shown}"


def split_official_state_dict(
    state_dict: Mapping[str, Tensor], layout: ExpectedLayout
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Map official keys to (DSANet weights, CLIP weights), refusing any mismatch.

    Raises:
        CheckpointError: listing missing keys, unexpected keys, shape mismatches, or CLIP alias
            copies that disagree.
    """
    dsanet, clip, alias, unexpected = {}, {}, {}, []
    for key, value in state_dict.items():
        if key.startswith(CLIP_ALIAS_PREFIX):
            alias[key.removeprefix(CLIP_ALIAS_PREFIX)] = value
        elif key.startswith(CLIP_PREFIX):
            clip[key.removeprefix(CLIP_PREFIX)] = value
        elif key in layout.dsanet:
            dsanet[key] = value
        elif key not in UNUSED_KEYS:
            unexpected.append(key)
    if not alias:  # a checkpoint saved with the alias removed is fine
        alias = clip
    problems = []
    missing = [k for k in layout.dsanet if k not in dsanet]
    missing += [CLIP_PREFIX + k for k in layout.clip if k not in clip]
    missing += [CLIP_ALIAS_PREFIX + k for k in layout.clip if k not in alias]
    unexpected += [CLIP_PREFIX + k for k in clip if k not in layout.clip]
    unexpected += [CLIP_ALIAS_PREFIX + k for k in alias if k not in layout.clip]
    shapes = [f"{k} {tuple(v.shape)} (expected {layout.dsanet[k]})" for k, v in dsanet.items()
              if tuple(v.shape) != layout.dsanet[k]]
    shapes += [f"{CLIP_PREFIX}{k} {tuple(v.shape)} (expected {layout.clip[k]})" for k, v in clip.items()
               if k in layout.clip and tuple(v.shape) != layout.clip[k]]
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            problems.append(_listing(title, items))
    if not problems:
        differing = [k for k in clip if not torch.equal(clip[k], alias[k])]
        if differing:
            problems.append(_listing(f"CLIP tensors differ between {CLIP_PREFIX}* and {CLIP_ALIAS_PREFIX}*", differing))
    if problems:
        raise CheckpointError("the checkpoint does not match the DSANet layout: " + "; ".join(problems))
    return dsanet, {k: v.float() for k, v in clip.items()}


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def import_official_checkpoint(
    path: str | Path, preset: str | Path | DSANetConfig, clip_config: Mapping | None = None
) -> Bundle:
    """Convert an official checkpoint into a :class:`Bundle` (weights, CLIP, text features).

    Args:
        path: ``model_ucf.pth`` / ``model_xd.pth`` (or a training ``checkpoint.pth``).
        preset: the dataset preset the checkpoint was trained with; checked against its structure.
        clip_config: open_clip architecture of the embedded CLIP; OpenAI ViT-B/16 (the released
            checkpoints) by default. Other values are for reduced-size models in tests.
    """
    cfg = resolve_config(preset)
    state_dict = read_official_checkpoint(path)
    detected = detect_preset(state_dict)
    if isinstance(preset, str) and preset in ("ucf", "xd") and detected not in (None, preset):
        raise CheckpointError(f"{path} looks like a {detected!r} checkpoint (by its layers and adapters), "
                              f"not {preset!r}: pass --preset {detected}")
    dsanet_sd, clip_sd = split_official_state_dict(state_dict, expected_layout(cfg, clip_config))
    dsanet_sd = {k: v.float() for k, v in dsanet_sd.items()}
    text_features = compute_text_features(cfg, dsanet_sd, clip_sd)
    source = {"kind": "official-checkpoint", "file": Path(path).name, "file_sha256": file_sha256(path)}
    clip = dict(OPENAI_VIT_B_16) if clip_config is None else {"model_name": "custom", "pretrained": None,
                                                              "config": dict(clip_config)}
    return Bundle(config=cfg, state_dict=dsanet_sd, text_features=text_features, clip_state_dict=clip_sd,
                  clip=clip, source=source)


def compute_text_features(cfg: DSANetConfig, dsanet_sd: Mapping[str, Tensor], clip_sd: Mapping[str, Tensor]) -> Tensor:
    """Class embeddings ``[C, D]`` of a model from its weights (fp32, CPU, eval)."""
    model = create_model(cfg)
    model.load_state_dict(dict(dsanet_sd), strict=True)
    model.text_encoder.attach_tower(build_text_tower(cfg.text))
    load_clip_text_weights(model, dict(clip_sd))
    with torch.inference_mode():
        return model.text_encoder().detach().clone()


def export_official_state_dict(bundle: Bundle) -> dict[str, Tensor]:
    """The inverse mapping: a flat state dict in the authors' layout (both CLIP prefixes, ``disAdj.sigma``).

    Lets weights trained here run in the authors' scripts, and lets tests build official-layout
    checkpoints.
    """
    out = dict(bundle.state_dict)
    out["disAdj.sigma"] = torch.tensor([0.1])
    for key, value in bundle.clip_state_dict.items():
        out[CLIP_PREFIX + key] = value
        out[CLIP_ALIAS_PREFIX + key] = value
    return out
