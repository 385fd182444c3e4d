"""Which CLIP image-tower weights a worker uses: the bundle's, a local file's, or open_clip's cached copy, by its
settings (``VAD_CLIP_SOURCE``, ``VAD_CLIP_WEIGHTS``, ``VAD_CLIP_CACHE_DIR``). Reading and finding the files is
:mod:`model.clip_checkpoint`'s. Nothing here downloads. Sources, in the order ``clip_source='auto'`` tries them:

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

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from model.bundle import Bundle, tensors_sha256
from model.clip_checkpoint import VISUAL_PREFIX, cached_checkpoint, read_clip_checkpoint, visual_tensors
from model.exceptions import ModelError
from workers.exceptions import ClipWeightsError, ClipWeightsMissing
from workers.settings import WorkerSettings


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
