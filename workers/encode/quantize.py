"""int8 CLIP image tower for CPUs: dynamic quantisation of every linear layer of the ViT.

``torch.ao.quantization.quantize_dynamic`` turns ``nn.Linear`` layers into int8 matrix products (weights
quantised once, per output channel; activations quantised per batch) through FBGEMM/oneDNN. open_clip's
attention is an ``nn.MultiheadAttention`` whose input projection is a bare parameter, which quantisation
skips: with only the MLPs quantised the tower gains ~1.15x. :class:`ProjectedAttention` computes the same
attention with ``nn.Linear`` projections (the same tensors, not copies) so that all of them are quantised.

OpenAI's ViTs use QuickGELU, ``x * sigmoid(1.702 x)``: three element-wise passes over the MLP's 4x-wide
activations (13 % of the int8 tower's time at batch 8 here). Since ``x * sigmoid(1.702 x) = silu(1.702 x) / 1.702``,
:func:`fold_quick_gelu` moves the two constants into the weights around it (``c_fc`` times 1.702, ``c_proj``
divided by it), leaving one in-place SiLU; the int8 weights are per-channel copies anyway, and the per-batch
activation scales absorb the factor, so the features are the same up to rounding.

What it gains, and on which CPUs, is measured by ``bench/pipeline.py`` and written in ``docs/analysis.md``
("CPU encoder: fp32, int8"): FBGEMM's int8 kernels need x86-64 with AVX2; on the AVX2-only CPUs measured
int8 gives 1.6-2.3x fp32's images/s at batch 8, which varies by machine, so it stays opt-in.
"""

from __future__ import annotations

import warnings
from pathlib import Path

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
        if not attention._qkv_same_embed_dim or attention.in_proj_bias is None or attention.bias_k is not None:
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


def project_attention(module: nn.Module) -> int:
    """Replace every self-attention ``nn.MultiheadAttention`` under ``module`` named ``attn`` by
    :class:`ProjectedAttention`, in place. Returns how many were replaced."""
    count = 0
    for parent in module.modules():
        attention = getattr(parent, "attn", None)
        if isinstance(attention, nn.MultiheadAttention):
            parent.attn = ProjectedAttention(attention)
            count += 1
    return count


QUICK_GELU_SCALE = 1.702


def fold_quick_gelu(module: nn.Module) -> int:
    """Rewrite every ``c_fc → QuickGELU → c_proj`` MLP under ``module`` as ``c_fc' → SiLU → c_proj'``, in place.

    ``c_fc'`` is ``c_fc`` with weight and bias times 1.702 and ``c_proj'`` has its weight divided by 1.702, so the
    MLP computes the same function with one element-wise pass instead of three. The two weights become new
    tensors (copies of the originals): meant for a tower whose weights are about to be converted anyway (int8).
    Returns how many MLPs were rewritten.
    """
    from open_clip.transformer import QuickGELU  # imported late, as the tower builder does

    count = 0
    for parent in module.modules():
        fc, act, proj = (getattr(parent, name, None) for name in ("c_fc", "gelu", "c_proj"))
        if not isinstance(act, QuickGELU) or not isinstance(fc, nn.Linear) or not isinstance(proj, nn.Linear):
            continue
        with torch.no_grad():
            fc.weight = nn.Parameter(fc.weight * QUICK_GELU_SCALE, requires_grad=False)
            if fc.bias is not None:
                fc.bias = nn.Parameter(fc.bias * QUICK_GELU_SCALE, requires_grad=False)
            proj.weight = nn.Parameter(proj.weight / QUICK_GELU_SCALE, requires_grad=False)
        parent.gelu = nn.SiLU(inplace=True)
        count += 1
    return count


def quantize_int8(visual: nn.Module) -> nn.Module:
    """The int8 version of an fp32 CPU image tower, converted in place (its fp32 linear weights are released).

    Every linear layer, the attention projections included, becomes a dynamically quantised int8 layer with
    per-channel weights; the patch embedding, layer norms and the final projection stay fp32. QuickGELU MLPs are
    folded into a SiLU first (:func:`fold_quick_gelu`).
    """
    project_attention(visual)
    fold_quick_gelu(visual)
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch announces a move of this API to torchao; the API is what we need
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(visual.eval(), {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The flags of the first CPU in ``/proc/cpuinfo`` (empty where there is none, e.g. macOS)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()

