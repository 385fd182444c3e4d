"""Where the CLIP image-tower weights come from: the bundle, a local file, or open_clip's cache.

Nothing here downloads. Sources, in the order ``clip_source='auto'`` tries them:

1. ``bundle``: the ``clip.visual.*`` tensors of the DSANet bundle (``vad import-checkpoint`` keeps
   the image tower of the authors' checkpoint, so the imported bundle is self-sufficient);
2. ``file``: ``VAD_CLIP_WEIGHTS``, a local checkpoint: OpenAI's ``ViT-B-16.pt`` (a TorchScript
   archive), open_clip's ``open_clip_pytorch_model.bin`` / ``.safetensors``, or a state dict;
3. ``cache``: the file open_clip would have downloaded for the bundle's ``model_name``/``pretrained``,
   looked up locally only (the Hugging Face hub cache, then open_clip's URL cache ``~/.cache/clip``).

A missing source is a :class:`~workers.exceptions.ClipWeightsMissing` that says how to get one; a
random image tower is never substituted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from model.bundle import Bundle, tensors_sha256
from model.clip_checkpoint import read_clip_checkpoint
from model.exceptions import ModelError
from workers.exceptions import ClipWeightsError, ClipWeightsMissing
from workers.settings import WorkerSettings

VISUAL_PREFIX = "visual."


@dataclass(frozen=True)
class ClipWeights:
    """The image-tower weights and where they came from.

    Attributes:
        state_dict: Visual tower tensors, keys without the ``visual.`` prefix.
        source: ``bundle``, ``file`` or ``cache``.
        location: The file they were read from (``None`` for the bundle).
        sha256: Digest of the tower as float32 under OpenAI names (same weights, same digest, whatever
            the source or the stored dtype).
    """

    state_dict: dict[str, Tensor]
    source: str
    location: str | None
    sha256: str


def visual_tensors(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The ``visual.*`` entries of an OpenAI-named CLIP state dict, prefix removed."""
    return {k.removeprefix(VISUAL_PREFIX): v for k, v in state_dict.items() if k.startswith(VISUAL_PREFIX)}


def make_weights(visual: dict[str, Tensor], source: str, location: str | None) -> ClipWeights:
    sha = tensors_sha256({VISUAL_PREFIX + k: v.float() for k, v in visual.items()})
    return ClipWeights(visual, source, location, sha)


def load_checkpoint_file(path: str | Path) -> dict[str, Tensor]:
    """The full state dict of a local CLIP checkpoint (see :func:`model.clip_checkpoint.read_clip_checkpoint`).

    Raises:
        ClipWeightsError: The file is missing or not a readable checkpoint.
    """
    try:
        return read_clip_checkpoint(path)
    except ModelError as exc:
        raise ClipWeightsError(f"{exc} (VAD_CLIP_WEIGHTS)") from exc


def cached_checkpoint(model_name: str, pretrained: str | None, cache_dir: Path | None = None
                      ) -> tuple[Path | None, list[str]]:
    """open_clip's cached file for ``model_name``/``pretrained``, looked up locally (never downloaded).

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


def resolve_clip_weights(bundle: Bundle | None, settings: WorkerSettings, clip: Mapping[str, Any]) -> ClipWeights:
    """Find the image-tower weights for the CLIP described by ``clip`` (``model_name``, ``pretrained``).

    Args:
        bundle: The DSANet bundle, if any (source ``bundle``).
        settings: ``clip_source``, ``clip_weights`` and ``clip_cache_dir``.
        clip: The CLIP identity (a bundle's ``clip`` dict).

    Raises:
        ClipWeightsMissing: No allowed source has the weights; the message says how to get them.
        ClipWeightsError: A source exists but is unreadable or has no image tower.
    """
    wanted = settings.clip_source
    if wanted in ("auto", "bundle") and bundle is not None and bundle.has_image_tower:
        return make_weights(visual_tensors(bundle.clip_state_dict), "bundle", None)
    if wanted in ("auto", "file") and settings.clip_weights is not None:
        return _from_file(settings.clip_weights, "file")
    looked: list[str] = []
    if wanted in ("auto", "cache"):
        found, looked = cached_checkpoint(str(clip.get("model_name")), clip.get("pretrained"), settings.clip_cache_dir)
        if found is not None:
            return _from_file(found, "cache")
    raise ClipWeightsMissing(_missing_message(bundle, settings, clip, looked))


def _from_file(path: Path, source: str) -> ClipWeights:
    visual = visual_tensors(load_checkpoint_file(path))
    if not visual:
        raise ClipWeightsError(f"{path} holds no CLIP image tower (no 'visual.*' weights)")
    return make_weights(visual, source, str(path))


def _missing_message(bundle: Bundle | None, settings: WorkerSettings, clip: Mapping[str, Any],
                     looked: list[str]) -> str:
    name = f"{clip.get('model_name')}/{clip.get('pretrained')}"
    where = [f"clip_source={settings.clip_source!r}"]
    if bundle is not None:
        where.append("the bundle carries no CLIP image tower")
    where.append("VAD_CLIP_WEIGHTS is not set" if settings.clip_weights is None else "VAD_CLIP_WEIGHTS is not allowed")
    where.append(f"open_clip's cache has no copy (looked at {', '.join(looked)})" if looked
                 else "open_clip has no pretrained entry for it")
    return (
        f"no CLIP image weights for {name}: {'; '.join(where)}. Get them one of three ways: "
        "(1) import the authors' DSANet checkpoint with `vad import-checkpoint model_ucf.pth --preset ucf -o "
        "ucf.safetensors` (the bundle carries CLIP) and pass it with --bundle or VAD_BUNDLE; "
        "(2) set VAD_CLIP_WEIGHTS=/path/to/ViT-B-16.pt (OpenAI's file, or open_clip's open_clip_pytorch_model.bin); "
        "(3) pre-populate open_clip's cache where the network is reachable, e.g. `python -c \"import open_clip; "
        "open_clip.create_model('ViT-B-16-quickgelu', pretrained='openai')\"`, and copy the Hugging Face hub "
        "cache to this machine (or point VAD_CLIP_CACHE_DIR at it)"
    )
