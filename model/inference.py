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
from collections.abc import Iterator, Sequence
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


def check_precision(precision: str) -> None:
    if precision not in ("fp32", "bf16", "fp16"):
        raise InputError(f"unknown precision {precision!r}: use fp32, bf16 or fp16")


@contextlib.contextmanager
def ieee_fp32_convolutions() -> Iterator[None]:
    """cuDNN convolutions in IEEE fp32 (not TF32) inside the block; the previous setting is restored after."""
    conv = torch.backends.cudnn.conv  # type: ignore[attr-defined]  # torch >= 2.9's per-operator precision
    before = conv.fp32_precision
    conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision = before


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to bf16/fp16 on ``device``; for ``"fp32"``, true fp32 convolutions on CUDA.

    cuDNN runs fp32 convolutions in TF32 by default (``torch.backends.cudnn.allow_tf32``): the temporal
    Conv1d of the graph layers then moved anomaly scores by up to 4.3e-5 from the CPU on an H100, over the
    1e-5 the fp32 path promises. DSANet is well under 1 % of a job's time, so TF32 would buy nothing here.
    """
    check_precision(precision)
    if precision == "fp32":
        return ieee_fp32_convolutions() if device.type == "cuda" else contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


@torch.inference_mode()
def score_sequences(
    model: DSANet,
    sequences: Sequence[Tensor],
    text_features: Tensor,
    temperature: float,
    max_chunks: int = 64,
    precision: str = "fp32",
) -> list[SnippetScores]:
    """Score feature sequences with the official test procedure, on the model's device.

    The 256-row chunks of all sequences are pooled and run ``max_chunks`` at a time; chunks are
    independent, so the grouping does not change the outputs.

    Args:
        model: DSANet (its mode is left to the caller; eval mode for the official procedure).
        sequences: ``[n_i, D]`` float32 features of each video.
        text_features: ``[C, D]`` class embeddings.
        temperature: ``τ`` of the refinement (spec E.1).
        max_chunks: chunks per forward call; bounds memory.
        precision: ``"fp32"`` (official), ``"bf16"`` or ``"fp16"`` autocast.

    Returns:
        One :class:`SnippetScores` per sequence, ``n_i`` rows each.
    """
    device = next(model.parameters()).device
    text = text_features.to(device, torch.float32)
    parts = [chunk_features(seq, model.cfg.visual_length) for seq in sequences]
    chunks = torch.cat([c for c, _ in parts]) if parts else torch.zeros(0)
    lengths = torch.cat([length for _, length in parts]) if parts else torch.zeros(0, dtype=torch.long)
    anomaly, probs = [], []
    for start in range(0, chunks.shape[0], max_chunks):
        batch, batch_lengths = chunks[start:start + max_chunks], lengths[start:start + max_chunks]
        with autocast_context(device, precision):
            out = model(batch.to(device), batch_lengths.to(device), text)
        logits1, logits2 = out.logits1.float(), out.logits2.float()
        anomaly.append(torch.sigmoid(logits1).reshape(-1).cpu())
        probs.append(refine_class_probs(logits1, logits2, temperature).reshape(-1, logits2.shape[-1]).cpu())
    flat_anomaly, flat_probs = torch.cat(anomaly or [torch.zeros(0)]), torch.cat(probs or [torch.zeros(0, 1)])
    results, offset = [], 0
    for seq, (seq_chunks, _) in zip(sequences, parts, strict=True):
        rows = slice(offset, offset + seq.shape[0])
        results.append(SnippetScores(anomaly=flat_anomaly[rows].numpy().astype(np.float32),
                                     class_probs=flat_probs[rows].numpy().astype(np.float32)))
        offset += seq_chunks.shape[0] * seq_chunks.shape[1]
    return results


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
        check_precision(precision)
        self.device = torch.device(device)
        self.precision = precision
        self.max_chunks = max_chunks
        self.bundle = bundle
        self.config = bundle.config
        self.model: DSANet = create_model(bundle.config, bundle).to(self.device)
        self.text_features = bundle.text_features.to(self.device, torch.float32)

    def score(self, features: np.ndarray | Tensor) -> SnippetScores:
        """``features [n, D]`` → :class:`SnippetScores` with ``n`` rows."""
        feats = validate_features(features, self.config.visual_width)
        return score_sequences(self.model, [feats], self.text_features, self.config.test_temperature,
                               self.max_chunks, self.precision)[0]
