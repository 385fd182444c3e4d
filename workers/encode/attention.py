"""Self-attention of the CLIP image tower with ``nn.Linear`` projections.

open_clip's ViT blocks use ``nn.MultiheadAttention`` (batch first). Outside its fused inference fast path
(which autocast turns off) it transposes the batch to the middle and applies its packed input projection to
that non-contiguous ``[L, B, D]`` tensor; under CPU bf16 autocast this falls into a batched matrix product that
first copies the weight once per image, and ran the whole tower at 0.23x fp32's speed (bench/pipeline.py, AVX-512
BF16 CPU). :class:`ProjectedAttention` computes the same function with two ``nn.Linear`` layers holding the
same tensors (no copies) and ``scaled_dot_product_attention``: bf16 then runs at ~2x fp32 on such CPUs, fp32 at
1.02-1.05x its fused path, and int8 quantisation reaches the attention projections too
(:mod:`workers.encode.quantize`). The encoder builds every tower with it, on every device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ProjectedAttention(nn.Module):
    """Self-attention as ``nn.MultiheadAttention`` computes it, with ``nn.Linear`` input and output projections.

    Built from an existing ``nn.MultiheadAttention`` (``need_weights=False``, no dropout): its parameters are
    reused, not copied. Called like it: ``attn(q, k, v, need_weights=False, attn_mask=None)`` returns
    ``(output, None)``; ``k`` and ``v`` must be ``q`` (a ViT's blocks attend to themselves).
    """

    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        if not convertible(attention):
            raise ValueError("only self-attention with packed, biased projections can be converted")
        width = attention.embed_dim
        self.heads = attention.num_heads
        self.batch_first = attention.batch_first
        with torch.device("meta"):
            self.in_proj = nn.Linear(width, 3 * width)
            self.out_proj = nn.Linear(width, width)
        self.in_proj.weight, self.in_proj.bias = attention.in_proj_weight, attention.in_proj_bias
        self.out_proj.weight, self.out_proj.bias = attention.out_proj.weight, attention.out_proj.bias

    def forward(self, query: Tensor, key: Tensor | None = None, value: Tensor | None = None,
                need_weights: bool = False, attn_mask: Tensor | None = None) -> tuple[Tensor, None]:
        """``query [B, L, D]`` (``[L, B, D]`` unless ``batch_first``) → ``([B, L, D], None)``."""
        if (key is not None and key is not query) or (value is not None and value is not query) or need_weights:
            raise ValueError("ProjectedAttention is self-attention without attention weights")
        x = query if self.batch_first else query.transpose(0, 1)
        batch, length, width = x.shape
        qkv = self.in_proj(x).reshape(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            attn_mask = ~attn_mask  # True masks a position out in nn.MultiheadAttention, lets it in here
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
        out = self.out_proj(out.transpose(1, 2).reshape(batch, length, width))
        return (out if self.batch_first else out.transpose(0, 1)), None


def convertible(attention: nn.MultiheadAttention) -> bool:
    """Whether :class:`ProjectedAttention` can stand in for this module: packed, biased projections, no extra
    key/value biases, no dropout."""
    return (attention._qkv_same_embed_dim and attention.in_proj_bias is not None and attention.bias_k is None
            and not attention.add_zero_attn and attention.dropout == 0.0)


def project_attention(module: nn.Module) -> int:
    """Replace every convertible ``nn.MultiheadAttention`` under ``module`` named ``attn`` (a transformer
    block's self-attention) by :class:`ProjectedAttention`, in place; others are left as they are. Returns how
    many were replaced."""
    count = 0
    for parent in module.modules():
        attention = getattr(parent, "attn", None)
        if isinstance(attention, nn.MultiheadAttention) and convertible(attention):
            parent.attn = ProjectedAttention(attention)
            count += 1
    return count
