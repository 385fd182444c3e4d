"""Building blocks of the DSANet visual branch (spec C.2, C.3).

Parameter names follow the authors' modules (``ln_1``, ``attn.in_proj_weight``, ``mlp.c_fc``,
``gc1.residual``...) so that released checkpoints map onto this code key for key.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class QuickGELU(nn.Module):
    """``x · σ(1.702 x)``, the activation of OpenAI CLIP and of DSANet's own MLPs."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in at least float32 and cast back, so half-precision inputs stay stable."""

    def forward(self, x: Tensor) -> Tensor:
        dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        out = F.layer_norm(x.to(dtype), self.normalized_shape, self.weight.to(dtype), self.bias.to(dtype), self.eps)
        return out.to(x.dtype)


class FeedForward(nn.Module):
    """``c_proj(QuickGELU(c_fc(x)))``: width → ratio·width → width, no residual."""

    def __init__(self, width: int, ratio: int = 4) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, width * ratio)
        self.gelu = QuickGELU()
        self.c_proj = nn.Linear(width * ratio, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


def block_diagonal_mask(length: int, window: int) -> Tensor:
    """Additive attention mask ``[length, length]``: 0 inside ``window``-sized diagonal blocks, −inf elsewhere."""
    block = torch.arange(length) // window
    mask = torch.full((length, length), float("-inf"))
    mask[block[:, None] == block[None, :]] = 0.0
    return mask


class WindowedSelfAttention(nn.Module):
    """Multi-head self-attention with a fixed additive mask and no key-padding mask.

    Same parameters and arithmetic as ``nn.MultiheadAttention`` (packed ``in_proj``, scale
    ``1/sqrt(head_dim)``), batch-first.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x [B, T, D]``, ``mask [T, T]`` additive → ``[B, T, D]``."""
        b, t, d = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads) + mask.to(q.dtype)
        out = scores.softmax(dim=-1) @ v
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class TemporalBlock(nn.Module):
    """Pre-LN transformer block: ``x + Attn(LN₁ x)``, then ``x + MLP(LN₂ x)``."""

    def __init__(self, width: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(width)
        self.attn = WindowedSelfAttention(width, heads)
        self.ln_2 = LayerNorm(width)
        self.mlp = FeedForward(width, mlp_ratio)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class TemporalTransformer(nn.Module):
    """Stack of :class:`TemporalBlock` sharing one block-diagonal mask (spec C.2 step 2)."""

    mask: Tensor

    def __init__(self, width: int, layers: int, heads: int, length: int, window: int, mlp_ratio: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(TemporalBlock(width, heads, mlp_ratio) for _ in range(layers))
        self.register_buffer("mask", block_diagonal_mask(length, window), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.resblocks:
            x = block(x, self.mask)
        return x


class GraphConvolution(nn.Module):
    """``A·(h·W) + R(h)``: ``W [in, out]`` without bias; ``R`` a width-5 Conv1d over time when
    ``in ≠ out``, else the identity."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        nn.init.xavier_uniform_(self.weight)
        self.residual: nn.Conv1d | None = None
        if in_features != out_features:
            self.residual = nn.Conv1d(in_features, out_features, kernel_size=5, padding=2)

    def forward(self, h: Tensor, adj: Tensor) -> Tensor:
        """``h [B, T, in]``, ``adj [B, T, T]`` or ``[T, T]`` → ``[B, T, out]``."""
        out = adj @ (h @ self.weight)
        if self.residual is None:
            return out + h
        return out + self.residual(h.transpose(1, 2)).transpose(1, 2)


def similarity_adjacency(x: Tensor, lengths: Tensor, threshold: float) -> Tensor:
    """Thresholded, row-softmaxed cosine graph restricted to each sequence's valid block (spec C.2 step 3).

    Args:
        x: ``[B, T, D]`` transformer output.
        lengths: ``[B]`` valid lengths ``L_b``.
        threshold: entries ``≤ threshold`` become 0 (not −inf) before the softmax.

    Returns:
        ``[B, T, T]``: rows ``< L_b`` hold a softmax over columns ``< L_b``; everything else is 0.
    """
    norms = x.norm(dim=-1, keepdim=True)
    sim = (x @ x.transpose(1, 2)) / (norms @ norms.transpose(1, 2) + 1e-20)
    sim = F.threshold(sim, threshold, 0.0)
    valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]  # [B, T]
    sim = sim.masked_fill(~valid[:, None, :], float("-inf")).softmax(dim=-1)
    return sim.masked_fill(~valid[:, :, None], 0.0)


def distance_adjacency(length: int) -> Tensor:
    """``exp(−|i − j| / e)`` over the full ``[length, length]`` grid, unnormalised (float64; cast at use)."""
    pos = torch.arange(length, dtype=torch.float64)
    return torch.exp(-(pos[:, None] - pos[None, :]).abs() / math.e)
