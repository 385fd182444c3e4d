"""DSANet's training objective (spec D), as functions of the model's typed outputs.

Notation: ``y_b`` the label vector of sequence ``b`` (one-hot UCF, multi-hot XD, normal at index 0),
``q_b = y_b / Σ y_b``, ``L_b`` its valid length and ``k_b = floor(L_b / 16) + 1`` the top-k size.
Every term is computed in float32 whatever the precision of the forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from model.config import TrainingConfig
from model.network import DSANetOutput

TOPK_DIVISOR = 16


@dataclass(frozen=True)
class LossSettings:
    """Weights and constants of the objective (spec D; C.1 "fixed constants")."""

    mil_align_weight: float = 1.1
    label_smoothing: float = 0.1
    background_mass: float = 0.01
    with_sgnm: bool = True

    @classmethod
    def from_training(cls, cfg: TrainingConfig) -> LossSettings:
        return cls(cfg.loss2_weight, cfg.label_smoothing, cfg.background_mass, with_sgnm=True)


class LossTerms(NamedTuple):
    """The seven terms and the weighted total (scalars). ``l6``/``l7`` are zero without SGNM."""

    l1_coarse: Tensor
    l2_mil_align: Tensor
    l3_separation: Tensor
    l4_event: Tensor
    l5_background: Tensor
    l6_consistency: Tensor
    l7_compactness: Tensor
    total: Tensor

    def as_floats(self) -> dict[str, float]:
        return {name: float(value.detach()) for name, value in self._asdict().items()}


def topk_counts(lengths: Tensor) -> Tensor:
    """``k_b = floor(L_b / 16) + 1`` (int64 ``[B]``)."""
    return torch.div(lengths.long(), TOPK_DIVISOR, rounding_mode="floor") + 1


def topk_mean(values: Tensor, lengths: Tensor) -> Tensor:
    """Per sequence and channel, the mean of the ``k_b`` largest values among the first ``L_b`` rows.

    Args:
        values: ``[B, T, K]``; channels are ranked independently.
        lengths: ``[B]`` valid lengths (``>= 1``).

    Returns:
        ``[B, K]``.
    """
    steps = values.shape[1]
    lengths = lengths.to(values.device)
    valid = torch.arange(steps, device=values.device)[None, :] < lengths[:, None]  # [B, T]
    masked = values.masked_fill(~valid[..., None], float("-inf"))
    k = topk_counts(lengths)
    top = masked.topk(int(k.max()), dim=1).values  # [B, k_max, K], descending
    keep = torch.arange(top.shape[1], device=values.device)[None, :, None] < k[:, None, None]
    return torch.where(keep, top, torch.zeros_like(top)).sum(dim=1) / k[:, None].to(values.dtype)


def normalised_targets(labels: Tensor) -> Tensor:
    """``q_b = y_b / Σ_c y_bc``."""
    return labels / labels.sum(dim=1, keepdim=True)


def coarse_loss(logits1: Tensor, lengths: Tensor, labels: Tensor) -> Tensor:
    """L1: binary cross-entropy of the top-k mean of ``σ(logits1)`` against ``1 − y_b[0]``."""
    scores = topk_mean(torch.sigmoid(logits1), lengths).squeeze(-1)
    return F.binary_cross_entropy(scores, 1.0 - labels[:, 0])


def mil_align_loss(logits2: Tensor, lengths: Tensor, labels: Tensor) -> Tensor:
    """L2: cross-entropy of the per-class top-k means of ``logits2`` against ``q_b``."""
    video_logits = topk_mean(logits2, lengths)
    return -(normalised_targets(labels) * F.log_softmax(video_logits, dim=1)).sum(dim=1).mean()


def separation_loss(text_features: Tensor) -> Tensor:
    """L3: mean over the anomaly classes of ``|t_0 · t_c|`` on unit text embeddings."""
    text = F.normalize(text_features, dim=-1)
    return (text[1:] @ text[0]).abs().sum() / (text.shape[0] - 1)


def smoothed_cross_entropy(logits: Tensor, target: Tensor, smoothing: float) -> Tensor:
    """``−Σ_c ((1 − ε)·target + ε/C) · log_softmax(logits)``, batch mean. ``logits``/``target`` ``[B, C]``."""
    smoothed = (1.0 - smoothing) * target + smoothing / logits.shape[-1]
    return -(smoothed * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def event_loss(logits3: Tensor, labels: Tensor, smoothing: float) -> Tensor:
    """L4: label-smoothed cross-entropy of the event-pooled logits against ``q_b``."""
    return smoothed_cross_entropy(logits3[:, 0], normalised_targets(labels), smoothing)


def background_target(num_classes: int, mass: float) -> Tensor:
    """``g = [1, mass, …, mass] / (1 + mass·(C − 1))``: background is mostly normal, for every video."""
    target = torch.full((num_classes,), mass)
    target[0] = 1.0
    return target / target.sum()


def background_loss(logits4: Tensor, smoothing: float, mass: float) -> Tensor:
    """L5: label-smoothed cross-entropy of the background-pooled logits against :func:`background_target`."""
    logits = logits4[:, 0]
    target = background_target(logits.shape[-1], mass).to(logits)
    return smoothed_cross_entropy(logits, target.expand_as(logits), smoothing)


def consistency_loss(logits1: Tensor, visual: Tensor, reconstructed: Tensor, lengths: Tensor) -> Tensor:
    """L6: MSE between ``σ(logits1)`` and ``(1 − cos(v, z)) / 2`` over all valid positions, pooled.

    Gradients flow into both sides (the coarse head and the SGNM reconstruction).
    """
    scores = torch.sigmoid(logits1.squeeze(-1))
    error = (1.0 - F.cosine_similarity(visual, reconstructed, dim=-1)) / 2.0
    valid = torch.arange(scores.shape[1], device=scores.device)[None, :] < lengths.to(scores.device)[:, None]
    return F.mse_loss(scores[valid], error[valid])


def dsanet_loss(out: DSANetOutput, lengths: Tensor, labels: Tensor, settings: LossSettings) -> LossTerms:
    """The total ``L1 + w₂·L2 + L3 + L4 + L5 + L6 + L7`` (spec D) and its terms.

    Args:
        out: Model outputs of a training forward (``with_sgnm=True`` unless ``settings.with_sgnm`` is off).
        lengths: ``[B]`` valid lengths.
        labels: ``[B, C]`` label vectors (not normalised).
        settings: Weights and constants. Without SGNM the official total is ``L1 + … + L5``, unweighted.
    """
    logits1, logits2 = out.logits1.float(), out.logits2.float()
    labels = labels.to(logits1)
    l1 = coarse_loss(logits1, lengths, labels)
    l2 = mil_align_loss(logits2, lengths, labels)
    l3 = separation_loss(out.text_features.float())
    l4 = event_loss(out.logits3.float(), labels, settings.label_smoothing)
    l5 = background_loss(out.logits4.float(), settings.label_smoothing, settings.background_mass)
    zero = logits1.new_zeros(())
    if not settings.with_sgnm:
        return LossTerms(l1, l2, l3, l4, l5, zero, zero, l1 + l2 + l3 + l4 + l5)
    if out.sgnm is None:
        raise ValueError("the SGNM terms need the SGNM outputs: call the model with with_sgnm=True")
    l6 = consistency_loss(logits1, out.visual.float(), out.sgnm.reconstructed.float(), lengths)
    l7 = out.sgnm.g_loss.float()
    total = l1 + settings.mil_align_weight * l2 + l3 + l4 + l5 + l6 + l7
    return LossTerms(l1, l2, l3, l4, l5, l6, l7, total)
