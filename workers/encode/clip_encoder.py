"""The CLIP image encoder: open_clip's vision tower, built from a bundle's CLIP config, weights loaded strictly.

Only the image tower is built and kept (the text features are in the bundle). Its output is
``encode_image`` without normalisation: the 512-d embedding after ``ln_post`` and ``proj`` that the
VadCLIP features hold (spec A.1, B). The tower takes the weights' tensors as its parameters
(:func:`model.weights.build_with_weights`): a bundle's image tower is held once.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from model.bundle import OPENAI_VIT_B_16, Bundle
from model.weights import build_with_weights
from workers.encode.attention import project_attention
from workers.encode.clip_weights import ClipWeights, resolve_clip_weights
from workers.encode.cpu import has_native_bf16
from workers.encode.preprocess import OPENAI_MEAN, OPENAI_STD, Preprocessor
from workers.exceptions import ClipWeightsError, ConfigurationError
from workers.settings import WorkerSettings

logger = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; anything else as given (checked)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"device {device!r} was requested but CUDA is not available; "
                                 "use device='cpu' or 'auto'")
    return resolved


PRECISIONS = ("fp32", "bf16", "fp16", "int8")

DEFAULT_BATCH = {"cpu": 8, "cuda": 32}
"""Images per encoder pass when ``batch_size`` is unset, by device type (others: the CPU's).

CPU, measured by ``bench/pipeline.py`` (ViT-B/16, 2 AMD EPYC cores with AVX2 and no AVX-512). With other jobs
on the cores (load average 2-5, two runs; images/s at batch 1/8/32: fp32 0.65/1.71/1.79 and 0.53/1.45/1.61,
int8 1.38/2.94/2.63 and 0.83/2.56/2.57) batch 1 runs at 0.37-0.47x batch 8, and batch 32 gains little or
nothing (fp32 1.05-1.11x, int8 0.89-1.00x). On the quiet machine (fp32 4.11/4.17/3.53) batch 1 and 8 run
alike and 32 is slower (int8 alone prefers batch 1 there: 7.1 against 6.2 images/s). 8 is never far from
the best, and its decoded 720p frames take a quarter of batch 32's memory (22 MB a batch, up to four
batches in flight). CUDA: larger batches keep the GPU busy; 32 is what the worker used before (not
measured here).
"""


def default_batch_size(device: torch.device) -> int:
    """The measured default batch of a device type (see :data:`DEFAULT_BATCH`)."""
    return DEFAULT_BATCH.get(device.type, DEFAULT_BATCH["cpu"])


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 on CUDA (fp16 where bf16 is unsupported) and on CPUs with native bf16 (AVX-512 BF16 or
    AMX: 1.8-2.1x fp32's images/s there, features at cosine 0.99995), fp32 on other CPUs (where bf16 is emulated
    and 4x slower than fp32). Measured by ``bench/pipeline.py``; see docs/analysis.md.

    Raises:
        ConfigurationError: An unknown precision, or ``int8`` on another device than the CPU.
    """
    if precision not in (*PRECISIONS, "auto"):
        raise ConfigurationError(f"unknown CLIP precision {precision!r}: use auto, {', '.join(PRECISIONS)}")
    if precision == "int8" and device.type != "cpu":
        raise ConfigurationError(f"CLIP precision int8 runs on the CPU only, not on {device}: use bf16 or fp16 "
                                 "(or auto) on a GPU, or device=cpu")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and has_native_bf16():
        return "bf16"
    return "fp32"


def build_vision_tower(clip_config: Mapping[str, Any]) -> nn.Module:
    """open_clip's image tower for an open_clip architecture dict (``embed_dim``, ``vision_cfg``, ``quick_gelu``)."""
    from open_clip.model import _build_vision_tower  # the builder open_clip's CLIP itself uses

    try:
        return _build_vision_tower(clip_config["embed_dim"], dict(clip_config["vision_cfg"]),
                                   quick_gelu=bool(clip_config.get("quick_gelu", False)))
    except (KeyError, TypeError) as exc:
        raise ClipWeightsError(f"cannot build the CLIP image tower from its config {dict(clip_config)}: {exc}") from exc


class ClipImageEncoder:
    """CLIP image features of uint8 frames: preprocessing and the vision tower, batched, on one device.

    Args:
        clip: The CLIP identity: ``model_name``, ``pretrained`` and ``config`` (open_clip architecture).
        weights: The image-tower weights (see :func:`~workers.encode.clip_weights.resolve_clip_weights`).
        device: Where the tower runs.
        precision: ``fp32``, ``bf16``/``fp16`` autocast, or ``int8`` (CPU only: every linear layer dynamically
            quantised once, here; see :mod:`workers.encode.quantize`), or ``auto`` (:func:`resolve_precision`).
        batch_size: Images per forward pass (``None``: :func:`default_batch_size` of the device).
        resize: Short side before cropping (``None``: the model's image size).

    Raises:
        ClipWeightsError: The weights do not fit the architecture (listing the mismatched keys).
        ConfigurationError: An unknown precision, or int8 on a GPU.
    """

    def __init__(self, clip: Mapping[str, Any], weights: ClipWeights, *, device: str | torch.device = "cpu",
                 precision: str = "fp32", batch_size: int | None = None, resize: int | None = None) -> None:
        config = clip["config"]
        self.clip = dict(clip)
        self.weights_source, self.weights_location = weights.source, weights.location
        self.weights_sha256 = weights.sha256
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)
        self.batch_size = batch_size or default_batch_size(self.device)
        try:
            self.visual = build_with_weights(lambda: build_vision_tower(config), weights.state_dict)
        except RuntimeError as exc:
            raise ClipWeightsError(f"the CLIP image weights ({weights.source}"
                                   f"{': ' + weights.location if weights.location else ''}) do not fit "
                                   f"{self.name}: {str(exc)[:600]}") from exc
        self.visual = self.visual.to(self.device).eval().requires_grad_(False)
        project_attention(self.visual)  # the same function, faster under autocast, and int8 reaches it
        if self.precision == "int8":
            from workers.encode.quantize import quantize_int8

            self.visual = quantize_int8(self.visual)
        vision = config["vision_cfg"]
        self.embed_dim = int(config["embed_dim"])
        self.preprocess = Preprocessor(
            image_size=int(vision["image_size"]), resize=resize,
            mean=tuple(vision.get("image_mean") or OPENAI_MEAN),
            std=tuple(vision.get("image_std") or OPENAI_STD),
        )

    @classmethod
    def create(cls, settings: WorkerSettings, bundle: Bundle | None = None, device: torch.device | None = None,
               weights: ClipWeights | None = None) -> ClipImageEncoder:
        """The encoder for a bundle's CLIP (OpenAI ViT-B/16 without a bundle), weights found per ``settings``
        unless already resolved (``weights``)."""
        clip = bundle.clip if bundle is not None else OPENAI_VIT_B_16
        weights = weights or resolve_clip_weights(bundle, settings, clip)
        return cls(clip, weights, device=device or resolve_device(settings.device), precision=settings.clip_precision,
                   batch_size=settings.batch_size, resize=settings.resize)

    def with_precision(self, precision: str) -> ClipImageEncoder:
        """The same encoder at another precision, sharing this one's preprocessing and tower weights (``int8``: a
        quantised copy of the tower; ``fp32``/``bf16``/``fp16``: the same tower under another autocast).

        Raises:
            ConfigurationError: This encoder is int8 already (its fp32 weights are gone), or the precision does
                not fit the device (see :func:`resolve_precision`).
        """
        precision = resolve_precision(precision, self.device)
        if precision == self.precision:
            return self
        if self.precision == "int8":
            raise ConfigurationError("an int8 encoder has no fp32 tower left to run at another precision")
        other = copy.copy(self)
        other.precision = precision
        if precision == "int8":
            from workers.encode.quantize import quantize_int8

            other.visual = quantize_int8(copy.deepcopy(self.visual))
        return other

    @property
    def name(self) -> str:
        """``model_name/pretrained``, e.g. ``ViT-B-16-quickgelu/openai``."""
        return f"{self.clip.get('model_name')}/{self.clip.get('pretrained')}"

    @property
    def image_size(self) -> int:
        return self.preprocess.image_size

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision in ("fp32", "int8"):
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @torch.inference_mode()
    def encode_images(self, images: Tensor) -> Tensor:
        """Preprocessed ``[N, 3, S, S]`` → ``[N, D]`` float32 on the encoder's device, in batches."""
        out = []
        for start in range(0, images.shape[0], self.batch_size):
            with self._autocast():
                out.append(self.visual(images[start : start + self.batch_size].to(self.device)).float())
        if not out:
            return torch.zeros(0, self.embed_dim, device=self.device)
        return torch.cat(out)

    @torch.inference_mode()
    def encode_snippets(self, frames: np.ndarray | Tensor, views: Sequence[int] = (0,)) -> Tensor:
        """Embed snippet frames in one or more views.

        Args:
            frames: uint8 RGB ``[N, H, W, 3]`` (one frame per snippet) or ``[N, T, H, W, 3]`` (all ``T``
                frames; their embeddings are averaged per snippet).
            views: Ten-crop view indices (0 centre … 5 mirrored centre …).

        Returns:
            ``[V, N, D]`` float32 on the CPU.
        """
        frames = torch.as_tensor(frames)
        per_snippet = frames.shape[1] if frames.ndim == 5 else 1
        flat = frames.reshape(-1, *frames.shape[-3:])
        step = max(1, self.batch_size // len(views))
        parts = []
        for start in range(0, flat.shape[0], step):
            chunk = flat[start : start + step].to(self.device, non_blocking=True)
            images = self.preprocess(chunk, views)  # [V, n, 3, S, S]
            feats = self.encode_images(images.flatten(0, 1))
            parts.append(feats.reshape(len(views), -1, feats.shape[-1]))
        out = torch.cat(parts, dim=1) if parts else torch.zeros(len(views), 0, self.embed_dim)
        out = out.reshape(len(views), -1, per_snippet, out.shape[-1]).mean(dim=2)
        return out.cpu()
