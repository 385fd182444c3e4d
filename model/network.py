"""The DSANet network (spec C): a pure ``nn.Module``, tensors in, a typed result out."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import DSANetConfig
from model.layers import (
    FeedForward,
    GraphConvolution,
    QuickGELU,
    TemporalTransformer,
    distance_adjacency,
    similarity_adjacency,
)
from model.sgnm import SGNM, SGNMOutput
from model.text import ClassTextEncoder


class DSANetOutput(NamedTuple):
    """Outputs of one forward call (``C`` classes, normal first).

    Attributes:
        text_features: ``[C, D]`` unit class embeddings ``t``.
        logits1: ``[B, T, 1]`` coarse anomaly logits; ``σ(logits1)`` is the snippet anomaly probability.
        logits2: ``[B, T, C]`` snippet-class logits against the visual-prompted text (already ×1/0.07).
        logits3: ``[B, 1, C]`` event-pooled video logits.
        logits4: ``[B, 1, C]`` background-pooled video logits.
        visual: ``[B, T, D]`` visual features ``v``.
        sgnm: SGNM outputs when requested (training), else ``None``.
    """

    text_features: Tensor
    logits1: Tensor
    logits2: Tensor
    logits3: Tensor
    logits4: Tensor
    visual: Tensor
    sgnm: SGNMOutput | None


class DSANet(nn.Module):
    """Disentangled semantic alignment network for weakly supervised video anomaly detection.

    Submodule names mirror the authors' implementation so that released checkpoints load key for
    key (see :mod:`model.official`). The CLIP text tower is not built here: attach one with
    ``model.text_encoder.attach_tower`` or pass precomputed ``text_features`` to :meth:`forward`.
    """

    distance_adj: Tensor

    def __init__(self, cfg: DSANetConfig, tokens: Tensor, class_index: Tensor) -> None:
        super().__init__()
        self.cfg = cfg
        width, half = cfg.visual_width, cfg.visual_width // 2
        self.frame_position_embeddings = nn.Embedding(cfg.visual_length, width)
        self.temporal = TemporalTransformer(
            width, cfg.visual_layers, cfg.visual_heads, cfg.visual_length, cfg.attn_window, cfg.mlp_ratio
        )
        self.gc1 = GraphConvolution(width, half)
        self.gc2 = GraphConvolution(half, half)
        self.gc3 = GraphConvolution(width, half)
        self.gc4 = GraphConvolution(half, half)
        self.act = QuickGELU()
        self.linear = nn.Linear(width, width)
        self.mlp1 = FeedForward(width, cfg.mlp_ratio)
        self.mlp2 = FeedForward(width, cfg.mlp_ratio)
        self.classifier = nn.Linear(width, 1)
        self.clip_adapter = ClassTextEncoder(cfg, tokens, class_index)
        self.video_anomaly_refiner = SGNM(cfg)
        self.register_buffer("distance_adj", distance_adjacency(cfg.visual_length), persistent=False)
        nn.init.normal_(self.frame_position_embeddings.weight, std=0.01)

    @property
    def text_encoder(self) -> ClassTextEncoder:
        return self.clip_adapter

    def encode_visual(self, x: Tensor, lengths: Tensor) -> Tensor:
        """``x [B, T, D]`` zero-padded features, ``lengths [B]`` → ``v [B, T, D]`` (spec C.2)."""
        x = x + self.frame_position_embeddings.weight.to(x.dtype)
        x = self.temporal(x)
        adj_sim = similarity_adjacency(x, lengths, self.cfg.similarity_threshold)
        adj_dist = self.distance_adj.to(x.dtype)
        h_sim = self.act(self.gc2(self.act(self.gc1(x, adj_sim)), adj_sim))
        h_dist = self.act(self.gc4(self.act(self.gc3(x, adj_dist)), adj_dist))
        return self.linear(torch.cat([h_sim, h_dist], dim=-1))

    def coarse_logits(self, v: Tensor) -> Tensor:
        """``v [B, T, D]`` → ``logits1 [B, T, 1]`` (spec C.3)."""
        return self.classifier(v + self.mlp2(v))

    def prompted_logits(self, v: Tensor, logits1: Tensor, text: Tensor) -> Tensor:
        """Visual-prompted text and ``logits2 [B, T, C]`` (spec C.5)."""
        prompt = F.normalize((logits1 * v).sum(dim=1), dim=-1)  # raw logits as weights, padding included
        prompted = text[None] + prompt[:, None]  # [B, C, D]
        prompted = prompted + self.mlp1(prompted)
        cos = F.normalize(v, dim=-1) @ F.normalize(prompted, dim=-1).transpose(1, 2)
        return cos / self.cfg.logit_temperature

    def pooled_logits(self, v: Tensor, logits1: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
        """Event and background pooled logits ``[B, 1, C]`` each (spec C.6)."""
        prob = torch.sigmoid(logits1)
        scale = self.cfg.pool_scale
        event_w = F.normalize(torch.exp(scale * prob) - 1.0, p=1, dim=1)
        background_w = F.normalize(torch.exp(scale * (1.0 - prob)) - 1.0, p=1, dim=1)
        text_n = F.normalize(text, dim=-1).T
        event = F.normalize((event_w * v).sum(dim=1, keepdim=True), dim=-1)
        background = F.normalize((background_w * v).sum(dim=1, keepdim=True), dim=-1)
        temperature = self.cfg.logit_temperature
        return event @ text_n / temperature, background @ text_n / temperature

    def forward(
        self,
        features: Tensor,
        lengths: Tensor,
        text_features: Tensor | None = None,
        with_sgnm: bool = False,
    ) -> DSANetOutput:
        """Run DSANet on zero-padded chunks.

        Args:
            features: ``[B, T, D]`` CLIP snippet features, zero-padded to ``T = visual_length``.
            lengths: ``[B]`` valid lengths (int).
            text_features: ``[C, D]`` precomputed class embeddings; computed from the text tower when ``None``.
            with_sgnm: also run the training-only SGNM branch.

        Returns:
            :class:`DSANetOutput`.
        """
        text = self.clip_adapter() if text_features is None else text_features.to(features.dtype)
        v = self.encode_visual(features, lengths)
        logits1 = self.coarse_logits(v)
        logits2 = self.prompted_logits(v, logits1, text)
        logits3, logits4 = self.pooled_logits(v, logits1, text)
        sgnm = self.video_anomaly_refiner(v, logits1) if with_sgnm else None
        return DSANetOutput(text, logits1, logits2, logits3, logits4, v, sgnm)
