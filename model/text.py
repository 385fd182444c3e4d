"""The text branch (spec C.4): CLIP's text transformer with DSANet's adapters.

The CLIP ViT-B/16 text tower is built by open_clip with the OpenAI architecture (QuickGELU) and
random weights: its pretrained values come from a checkpoint or bundle, never from a download.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import DSANetConfig, TextTowerConfig

SOT_TOKEN = 49406
EOT_TOKEN = 49407


def tokenize(descriptions: Sequence[str], context_length: int = 77) -> Tensor:
    """CLIP BPE token ids ``[len(descriptions), context_length]`` (``[SOT] … [EOT]``, zero padded).

    Uses open_clip's bundled BPE vocabulary (no download).
    """
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)(list(descriptions))


def build_text_tower(cfg: TextTowerConfig) -> nn.Module:
    """An open_clip ``TextTransformer`` in the OpenAI layout (QuickGELU), randomly initialised.

    Its state-dict keys are the OpenAI CLIP text keys (``token_embedding.weight``,
    ``transformer.resblocks.N.*``, ``ln_final.*``, ``text_projection``, ``positional_embedding``).
    """
    from open_clip.model import QuickGELU as OpenClipQuickGELU
    from open_clip.transformer import TextTransformer

    return TextTransformer(
        context_length=cfg.context_length,
        vocab_size=cfg.vocab_size,
        width=cfg.width,
        heads=cfg.heads,
        layers=cfg.layers,
        output_dim=cfg.width,
        act_layer=OpenClipQuickGELU,
    )


class TextAdapter(nn.Module):
    """``LeakyReLU₀.₀₁(x · Aᵀ)`` with a bias-free linear map (key ``fc.0.weight`` upstream)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        linear = nn.Linear(in_features, out_features, bias=False)
        nn.init.xavier_uniform_(linear.weight)
        self.fc = nn.Sequential(linear, nn.LeakyReLU(0.01))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)


def mix_adapter(x: Tensor, adapted: Tensor, weight: float) -> Tensor:
    """Rescale ``adapted`` to the per-token norm of ``x``, then ``weight·adapted + (1 − weight)·x``."""
    adapted = adapted * x.norm(dim=-1, keepdim=True) / (adapted.norm(dim=-1, keepdim=True) + 1e-6)
    return weight * adapted + (1.0 - weight) * x


class ClassTextEncoder(nn.Module):
    """Class descriptions → unit class embeddings ``t [C, D]``.

    Holds the trainable adapters (``text_adapter``, ``L_a + 1`` of them, the last one replacing
    CLIP's ``text_projection``). The frozen CLIP text tower is attached separately with
    :meth:`attach_tower`, so inference from precomputed text features needs no tower at all.
    """

    tokens: Tensor
    class_index: Tensor
    tower: Any  # open_clip TextTransformer (typed loosely: open_clip ships no precise stubs)

    def __init__(self, cfg: DSANetConfig, tokens: Tensor, class_index: Tensor) -> None:
        """
        Args:
            cfg: model config.
            tokens: ``[S, context]`` token ids of every description string.
            class_index: ``[S]`` class of each description (descriptions of a class are averaged).
        """
        super().__init__()
        width = cfg.text.width
        self.adapt_until = cfg.text_adapt_until
        self.mix_weight = cfg.text_mix_weight
        self.num_classes = cfg.num_classes
        self.text_adapter = nn.ModuleList(
            [TextAdapter(width, width) for _ in range(cfg.text_adapt_until)] + [TextAdapter(width, cfg.visual_width)]
        )
        self.register_buffer("tokens", tokens.long(), persistent=False)
        self.register_buffer("class_index", class_index.long(), persistent=False)
        self.tower = None

    def attach_tower(self, tower: nn.Module) -> None:
        """Attach a (frozen) CLIP text tower built by :func:`build_text_tower`."""
        tower.requires_grad_(False)
        self.tower = tower

    def forward(self) -> Tensor:
        """Encode every class description → ``[C, D]`` unit vectors."""
        if self.tower is None:
            raise RuntimeError("no CLIP text tower attached: load a bundle or checkpoint that includes one, "
                               "or pass precomputed text features to the model")
        tower, tokens = self.tower, self.tokens
        x = tower.token_embedding(tokens) + tower.positional_embedding
        for i, block in enumerate(tower.transformer.resblocks):
            x = block(x, attn_mask=tower.attn_mask)
            if i < self.adapt_until:
                x = mix_adapter(x, self.text_adapter[i](x), self.mix_weight)
        x = tower.ln_final(x)
        pooled = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        per_description = self.text_adapter[self.adapt_until](pooled)  # [S, D]
        # under bf16/fp16 autocast the adapter's output is half while the layer norm's is float32: sum in the wider
        dtype = torch.promote_types(per_description.dtype, x.dtype)
        sums = torch.zeros(self.num_classes, per_description.shape[-1], dtype=dtype, device=x.device)
        sums.index_add_(0, self.class_index, per_description.to(dtype))
        counts = torch.bincount(self.class_index, minlength=self.num_classes).clamp_min(1)
        return F.normalize(sums / counts[:, None].to(dtype), dim=-1)


def class_tokens(cfg: DSANetConfig) -> tuple[Tensor, Tensor]:
    """Token ids of every description of every class, and the class index of each row."""
    texts: list[str] = []
    index: list[int] = []
    for c, spec in enumerate(cfg.classes):
        texts.extend(spec.descriptions)
        index.extend([c] * len(spec.descriptions))
    return tokenize(texts, cfg.text.context_length), torch.tensor(index)
