"""SGNM: self-guided normality modelling (spec C.7; module ``video_anomaly_refiner`` upstream).

A training-only branch: prototypes are extracted from the snippets the coarse head finds most
normal, and the visual features are reconstructed from those prototypes. Nothing the model
predicts at inference depends on it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import DSANetConfig
from model.layers import FeedForward

_SGNM_LN_EPS = 1e-8


class SGNMOutput(NamedTuple):
    """Outputs of :class:`SGNM`.

    Attributes:
        reconstructed: ``[B, T, D]`` features rebuilt from the normal prototypes.
        prototypes: ``[B, M, D]`` per-video prototypes.
        g_loss: scalar compactness loss (spec C.7 step 3).
    """

    reconstructed: Tensor
    prototypes: Tensor
    g_loss: Tensor


class _Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` with the exact (erf) GELU."""

    def __init__(self, width: int, ratio: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width * ratio)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(width * ratio, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _CrossAttention(nn.Module):
    """Queries from one set, keys/values from another; ``W_kv`` packs keys then values."""

    def __init__(self, width: int, heads: int, normalized: bool) -> None:
        super().__init__()
        self.heads = heads
        self.normalized = normalized
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        if normalized:
            self.learn_scale = nn.Parameter(torch.ones(heads, 1, 1))

    def _split(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        return x.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)  # [B, H, n, d_h]

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """``x [B, N, D]`` attends to ``context [B, M, D]`` → ``[B, N, D]``."""
        q = self._split(self.q(x))
        k, v = (self._split(z) for z in self.kv(context).chunk(2, dim=-1))
        if self.normalized:
            # Decoder: cosine attention with a learned per-head scale, ReLU instead of softmax.
            weights = F.relu((F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * self.learn_scale)
        else:
            weights = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).flatten(2)
        return self.proj(out)


class _PrototypeBlock(nn.Module):
    """Extractor block (residual attention) or decoder block (attention output replaces the input)."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, decoder: bool) -> None:
        super().__init__()
        self.decoder = decoder
        self.norm1 = nn.LayerNorm(width, eps=_SGNM_LN_EPS)
        self.attn = _CrossAttention(width, heads, normalized=decoder)
        self.norm2 = nn.LayerNorm(width, eps=_SGNM_LN_EPS)
        self.mlp = _Mlp(width, mlp_ratio)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        attended = self.attn(self.norm1(x), self.norm1(context))
        x = attended if self.decoder else x + attended
        return x + self.mlp(self.norm2(x))


class SGNM(nn.Module):
    """Prototype extraction from likely-normal snippets and prototype-based reconstruction."""

    def __init__(self, cfg: DSANetConfig) -> None:
        super().__init__()
        width, sg = cfg.visual_width, cfg.sgnm
        self.num_normal = int(cfg.visual_length * sg.normal_ratio)
        self.video_prototypes = nn.Parameter(torch.randn(sg.num_prototypes, width))
        self.dnp_extractor = nn.ModuleList(
            _PrototypeBlock(width, sg.heads, cfg.mlp_ratio, decoder=False) for _ in range(sg.extractor_depth)
        )
        self.bottleneck = FeedForward(width, cfg.mlp_ratio)
        self.decoder = nn.ModuleList(
            _PrototypeBlock(width, sg.heads, cfg.mlp_ratio, decoder=True) for _ in range(sg.decoder_depth)
        )
        self.apply(_init_weights)

    def forward(self, v: Tensor, logits1: Tensor) -> SGNMOutput:
        """``v [B, T, D]``, ``logits1 [B, T, 1]`` → :class:`SGNMOutput`."""
        with torch.no_grad():
            idx = torch.sigmoid(logits1.squeeze(-1)).topk(self.num_normal, dim=1, largest=False).indices
        normal = v.detach().gather(1, idx[..., None].expand(-1, -1, v.shape[-1]))  # [B, k, D]
        protos = self.video_prototypes[None].expand(v.shape[0], -1, -1)
        for block in self.dnp_extractor:
            protos = block(protos, normal)
        cos = F.normalize(normal, dim=-1) @ F.normalize(protos, dim=-1).transpose(1, 2)  # [B, k, M]
        g_loss = (1.0 - cos).min(dim=-1).values.mean()
        z = self.bottleneck(v)
        for block in self.decoder:
            z = block(z, protos)
        return SGNMOutput(reconstructed=z, prototypes=protos, g_loss=g_loss)


def _init_weights(module: nn.Module) -> None:
    """Spec C.9: truncated-normal Linear weights (std 0.01, cut at ±0.03), zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.01, a=-0.03, b=0.03)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
