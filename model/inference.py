"""Inference exactly as the official test procedure (spec A.4 "testing" and E.1).

A feature sequence ``[n, D]`` of any length is cut into consecutive, non-overlapping chunks of
``T = 256`` rows, the last one zero-padded; every chunk runs independently (zero padding changes
the valid outputs, spec C.8, so it is reproduced exactly); outputs are flattened and cut to
``n``. The official loop also runs an all-zero chunk when ``n`` is a multiple of 256 and
discards its outputs; chunks are independent, so it is skipped here without changing anything.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from model.bundle import Bundle
from model.exceptions import InputError
from model.network import DSANet


@dataclass(frozen=True)
class SnippetScores:
    """Per-snippet outputs for one video.

    Attributes:
        anomaly: ``[n]`` float32, ``σ(logits1)``: the anomaly probability (the quantity behind AUC/AP).
        class_probs: ``[n, C]`` float32, refined class distribution ``P`` (spec E.1), rows sum to 1,
            columns in the model's class order (normal first).
    """

    anomaly: np.ndarray
    class_probs: np.ndarray


def chunk_features(features: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Split ``[n, D]`` into ``[k, length, D]`` zero-padded chunks and their valid lengths ``[k]``.

    ``k = ceil(n / length)``; full chunks have length ``length``, the last ``n − length·(k−1)``.
    """
    n, dim = features.shape
    k = math.ceil(n / length)
    padded = features.new_zeros(k * length, dim)
    padded[:n] = features
    lengths = torch.full((k,), length, dtype=torch.long, device=features.device)
    lengths[-1] = n - length * (k - 1)
    return padded.reshape(k, length, dim), lengths


def refine_class_probs(logits1: Tensor, logits2: Tensor, temperature: float) -> Tensor:
    """Hierarchical refinement (spec E.1): ``[1 − p, p·π̂₁, …, p·π̂_{C−1}]``.

    Args:
        logits1: ``[..., 1]`` coarse anomaly logits.
        logits2: ``[..., C]`` class logits (already carrying the 1/0.07 factor).
        temperature: ``τ`` of the preset (5.0 UCF, 1.0 XD).
    """
    p_abnormal = torch.sigmoid(logits1 / temperature)
    pi = torch.softmax(logits2 / temperature, dim=-1)
    abnormal = pi[..., 1:] / (pi[..., 1:].sum(dim=-1, keepdim=True) + 1e-12)
    return torch.cat([1.0 - p_abnormal, p_abnormal * abnormal], dim=-1)


def validate_features(features: np.ndarray | Tensor, width: int) -> Tensor:
    """A float32 ``[n, width]`` tensor, or :class:`InputError` saying what is wrong."""
    tensor = torch.as_tensor(features)
    if tensor.ndim != 2 or tensor.shape[1] != width:
        raise InputError(f"expected features of shape [n, {width}] (one CLIP embedding per 16-frame snippet), "
                         f"got {tuple(tensor.shape)}")
    if tensor.shape[0] == 0:
        raise InputError("the feature sequence is empty: a video needs at least one snippet")
    if not tensor.is_floating_point():
        raise InputError(f"features must be floating point, got {tensor.dtype}")
    if not torch.isfinite(tensor).all():
        raise InputError("features contain NaN or infinite values")
    return tensor.float()


class DSANetPredictor:
    """Scores feature sequences with a bundle's model; the device and precision are chosen here, once.

    Args:
        bundle: the model bundle.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``… (``"auto"``: CUDA when available).
        precision: ``"fp32"`` (default, matches the official outputs), or ``"bf16"``/``"fp16"``
            autocast on CUDA.
        max_chunks: chunks per forward batch; bounds memory for very long videos.
    """

    def __init__(self, bundle: Bundle, device: str = "cpu", precision: str = "fp32", max_chunks: int = 64) -> None:
        from model.factory import create_model

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if precision not in ("fp32", "bf16", "fp16"):
            raise InputError(f"unknown precision {precision!r}: use fp32, bf16 or fp16")
        self.device = torch.device(device)
        self.precision = precision
        self.max_chunks = max_chunks
        self.bundle = bundle
        self.config = bundle.config
        self.model: DSANet = create_model(bundle.config, bundle).to(self.device)
        self.text_features = bundle.text_features.to(self.device, torch.float32)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _batches(self, chunks: Tensor, lengths: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, chunks.shape[0], self.max_chunks):
            yield chunks[start:start + self.max_chunks], lengths[start:start + self.max_chunks]

    @torch.inference_mode()
    def score(self, features: np.ndarray | Tensor) -> SnippetScores:
        """``features [n, D]`` → :class:`SnippetScores` with ``n`` rows."""
        feats = validate_features(features, self.config.visual_width)
        n = feats.shape[0]
        chunks, lengths = chunk_features(feats, self.config.visual_length)
        anomaly, probs = [], []
        for batch, batch_lengths in self._batches(chunks, lengths):
            with self._autocast():
                out = self.model(batch.to(self.device), batch_lengths.to(self.device), self.text_features)
            logits1, logits2 = out.logits1.float(), out.logits2.float()
            anomaly.append(torch.sigmoid(logits1).reshape(-1))
            refined = refine_class_probs(logits1, logits2, self.config.test_temperature)
            probs.append(refined.reshape(-1, logits2.shape[-1]))
        return SnippetScores(
            anomaly=torch.cat(anomaly)[:n].cpu().numpy().astype(np.float32),
            class_probs=torch.cat(probs)[:n].cpu().numpy().astype(np.float32),
        )
