"""int8 CLIP image tower for CPUs: dynamic quantisation of every linear layer of the ViT.

``torch.ao.quantization.quantize_dynamic`` turns ``nn.Linear`` layers into int8 matrix products (weights
quantised once, per output channel; activations quantised per batch) through FBGEMM/oneDNN.

The attention projections are ``nn.Linear`` layers already: the encoder builds every tower with
:class:`~workers.encode.attention.ProjectedAttention` (``nn.MultiheadAttention``'s bare input projection would
be skipped by quantisation; with only the MLPs quantised the tower gains ~1.15x).

OpenAI's ViTs use QuickGELU, ``x * sigmoid(1.702 x)``: three element-wise passes over the MLP's 4x-wide
activations (13 % of the int8 tower's time at batch 8 here). Since ``x * sigmoid(1.702 x) = silu(1.702 x) / 1.702``,
:func:`fold_quick_gelu` moves the two constants into the weights around it (``c_fc`` times 1.702, ``c_proj``
divided by it), leaving one in-place SiLU; the int8 weights are per-channel copies anyway, and the per-batch
activation scales absorb the factor, so the features are the same up to rounding.

What it gains, and on which CPUs, is measured by ``bench/pipeline.py`` and written in ``docs/analysis.md``
("CPU encoder: fp32, bf16, int8"): FBGEMM's int8 kernels need x86-64 with AVX2; int8 gives 1.6-2.3x fp32's
images/s at batch 8 on the AVX2-only CPUs measured and 2.9-3.3x on one with AVX-512 VNNI. It stays opt-in:
random weights say little of a trained ViT's activation outliers, and the default features are fp32's (bf16's
on CPUs with native bf16).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from workers.encode.attention import project_attention

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
    project_attention(visual)  # a no-op for the encoder's towers, which have it already
    fold_quick_gelu(visual)
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch announces a move of this API to torchao; the API is what we need
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(visual.eval(), {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)
