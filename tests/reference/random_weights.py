"""Random state dicts in the OFFICIAL DSANet key layout (spec section F), for tests.

:func:`official_layout` lists every key (in the order of the official ``state_dict()``) with its
shape for a given set of sizes; :func:`make_random_official_state_dict` fills that layout with
seeded random values. With the full sizes (D = 512, text width 512, 12 text layers, vocab 49408,
context 77, T = 256, 16 prototypes, decoder depth 8; UCF: 2 temporal layers / L_a = 3, XD: 1 / 1)
the layout equals the official manifest minus the CLIP visual tower (``clipmodel.visual.*`` and
its ``clip_adapter.clipmodel.visual.*`` alias), which the DSANet forward never uses.

Independent of the project's ``model`` package on purpose (used by the naive oracle's tests).
"""

from __future__ import annotations

import math

import torch

__all__ = ["make_random_features", "make_random_official_state_dict", "official_layout"]

_MLP_RATIO = 4  # C.2 / C.3 / C.7: every MLP is width -> 4*width -> width


def _resblock_layout(prefix: str, width: int) -> list[tuple[str, tuple[int, ...]]]:
    """CLIP ResidualAttentionBlock keys (temporal transformer and CLIP text tower)."""
    hidden = _MLP_RATIO * width
    return [
        (f"{prefix}.attn.in_proj_weight", (3 * width, width)),
        (f"{prefix}.attn.in_proj_bias", (3 * width,)),
        (f"{prefix}.attn.out_proj.weight", (width, width)),
        (f"{prefix}.attn.out_proj.bias", (width,)),
        (f"{prefix}.ln_1.weight", (width,)),
        (f"{prefix}.ln_1.bias", (width,)),
        (f"{prefix}.mlp.c_fc.weight", (hidden, width)),
        (f"{prefix}.mlp.c_fc.bias", (hidden,)),
        (f"{prefix}.mlp.c_proj.weight", (width, hidden)),
        (f"{prefix}.mlp.c_proj.bias", (width,)),
        (f"{prefix}.ln_2.weight", (width,)),
        (f"{prefix}.ln_2.bias", (width,)),
    ]


def _sgnm_block_layout(prefix: str, D: int, learn_scale_heads: int | None) -> list[tuple[str, tuple[int, ...]]]:
    hidden = _MLP_RATIO * D
    rows: list[tuple[str, tuple[int, ...]]] = [(f"{prefix}.norm1.weight", (D,)), (f"{prefix}.norm1.bias", (D,))]
    if learn_scale_heads is not None:
        rows.append((f"{prefix}.attn.learn_scale", (learn_scale_heads, 1, 1)))
    rows += [
        (f"{prefix}.attn.q.weight", (D, D)),
        (f"{prefix}.attn.q.bias", (D,)),
        (f"{prefix}.attn.kv.weight", (2 * D, D)),
        (f"{prefix}.attn.kv.bias", (2 * D,)),
        (f"{prefix}.attn.proj.weight", (D, D)),
        (f"{prefix}.attn.proj.bias", (D,)),
        (f"{prefix}.norm2.weight", (D,)),
        (f"{prefix}.norm2.bias", (D,)),
        (f"{prefix}.mlp.fc1.weight", (hidden, D)),
        (f"{prefix}.mlp.fc1.bias", (hidden,)),
        (f"{prefix}.mlp.fc2.weight", (D, hidden)),
        (f"{prefix}.mlp.fc2.bias", (D,)),
    ]
    return rows


def official_layout(
    D: int,
    text_width: int,
    text_layers: int,
    vocab: int,
    context: int,
    temporal_layers: int,
    text_adapt_until: int,
    num_prototypes: int,
    decoder_depth: int,
    T: int,
    sgnm_heads: int = 8,
    gc_hidden: int | None = None,
    include_clip_alias: bool = True,
) -> dict[str, tuple[int, ...]]:
    """Key -> shape, in official state_dict order, without the CLIP visual tower."""
    H = D // 2 if gc_hidden is None else gc_hidden
    rows: list[tuple[str, tuple[int, ...]]] = []
    for i in range(temporal_layers):
        rows += _resblock_layout(f"temporal.resblocks.{i}", D)
    rows += [
        ("gc1.weight", (D, H)),
        ("gc1.residual.weight", (H, D, 5)),
        ("gc1.residual.bias", (H,)),
        ("gc2.weight", (H, H)),
        ("gc3.weight", (D, H)),
        ("gc3.residual.weight", (H, D, 5)),
        ("gc3.residual.bias", (H,)),
        ("gc4.weight", (H, H)),
        ("disAdj.sigma", (1,)),
        ("linear.weight", (D, 2 * H)),
        ("linear.bias", (D,)),
    ]
    for name in ("mlp1", "mlp2"):
        rows += [
            (f"{name}.c_fc.weight", (_MLP_RATIO * D, D)),
            (f"{name}.c_fc.bias", (_MLP_RATIO * D,)),
            (f"{name}.c_proj.weight", (D, _MLP_RATIO * D)),
            (f"{name}.c_proj.bias", (D,)),
        ]
    rows += [("classifier.weight", (1, D)), ("classifier.bias", (1,))]

    clip: list[tuple[str, tuple[int, ...]]] = [
        ("positional_embedding", (context, text_width)),
        ("text_projection", (text_width, D)),
        ("logit_scale", ()),
    ]
    for i in range(text_layers):
        clip += _resblock_layout(f"transformer.resblocks.{i}", text_width)
    clip += [
        ("token_embedding.weight", (vocab, text_width)),
        ("ln_final.weight", (text_width,)),
        ("ln_final.bias", (text_width,)),
    ]
    rows += [(f"clipmodel.{k}", s) for k, s in clip]
    rows += [("frame_position_embeddings.weight", (T, D))]
    if include_clip_alias:
        rows += [(f"clip_adapter.clipmodel.{k}", s) for k, s in clip]
    for i in range(text_adapt_until):
        rows.append((f"clip_adapter.text_adapter.{i}.fc.0.weight", (text_width, text_width)))
    rows.append((f"clip_adapter.text_adapter.{text_adapt_until}.fc.0.weight", (D, text_width)))

    pre = "video_anomaly_refiner"
    rows.append((f"{pre}.video_prototypes", (num_prototypes, D)))
    rows += _sgnm_block_layout(f"{pre}.dnp_extractor.0", D, None)
    rows += [
        (f"{pre}.bottleneck.c_fc.weight", (_MLP_RATIO * D, D)),
        (f"{pre}.bottleneck.c_fc.bias", (_MLP_RATIO * D,)),
        (f"{pre}.bottleneck.c_proj.weight", (D, _MLP_RATIO * D)),
        (f"{pre}.bottleneck.c_proj.bias", (D,)),
    ]
    for i in range(decoder_depth):
        rows += _sgnm_block_layout(f"{pre}.decoder.{i}", D, sgnm_heads)
    layout = dict(rows)
    assert len(layout) == len(rows), "duplicate key in layout"
    return layout


def _random_value(key: str, shape: tuple[int, ...], g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    def randn(*s: int) -> torch.Tensor:
        return torch.randn(*s, generator=g, dtype=torch.float64)

    leaf = key.rsplit(".", 1)[-1]
    if key.endswith("logit_scale"):
        value = torch.tensor(math.log(1 / 0.07), dtype=torch.float64)
    elif key == "disAdj.sigma":
        value = torch.full(shape, 0.1, dtype=torch.float64)
    elif key.endswith("learn_scale"):
        value = 1.0 + 0.2 * randn(*shape)
    elif key.endswith("video_prototypes"):
        value = randn(*shape)
    elif key.endswith("token_embedding.weight"):
        value = 0.1 * randn(*shape)
    elif key.endswith("positional_embedding"):
        value = 0.05 * randn(*shape)
    elif key == "frame_position_embeddings.weight":
        value = 0.1 * randn(*shape)
    elif ".ln_" in key or ".norm" in key or "ln_final" in key:
        value = (1.0 + 0.1 * randn(*shape)) if leaf == "weight" else 0.05 * randn(*shape)
    elif key in ("gc1.weight", "gc2.weight"):
        value = randn(*shape) * math.sqrt(2.0 / (shape[0] + shape[1]))  # Xavier-like, stored [in, out]
    elif key in ("gc3.weight", "gc4.weight"):
        # the unnormalised distance graph multiplies by ~3.4 (its row sums): compensate
        value = randn(*shape) * math.sqrt(2.0 / (shape[0] + shape[1])) / 3.0
    elif key == "classifier.weight":  # keep sigmoid(logits1) away from saturation
        value = 0.3 * randn(*shape) / math.sqrt(shape[1])
    elif key.endswith("residual.weight"):  # Conv1d [out, in, 5]
        value = randn(*shape) / math.sqrt(shape[1] * shape[2])
    elif len(shape) == 2:  # Linear [out, in] (incl. in_proj, adapters, text_projection)
        value = randn(*shape) / math.sqrt(shape[1])
    elif len(shape) == 1:  # biases
        value = 0.02 * randn(*shape)
    else:  # pragma: no cover - every key is covered above
        raise AssertionError(key)
    return value.to(dtype)


def make_random_official_state_dict(
    D: int = 32,
    text_width: int = 32,
    text_layers: int = 2,
    text_heads: int = 4,
    vocab: int = 100,
    context: int = 16,
    temporal_layers: int = 2,
    text_adapt_until: int = 2,
    num_prototypes: int = 4,
    decoder_depth: int = 2,
    T: int = 64,
    seed: int = 0,
    *,
    sgnm_heads: int = 8,
    gc_hidden: int | None = None,
    include_clip_alias: bool = True,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Seeded random weights with exactly the official key names (no CLIP visual tower).

    ``text_heads`` does not affect any shape; it is only checked for divisibility. As in the
    official checkpoint, the ``clip_adapter.clipmodel.*`` keys are aliases of the SAME tensors as
    ``clipmodel.*`` (pass ``include_clip_alias=False`` to omit them). Values are scaled so that
    activations stay O(1) (Linear ~ N(0, 1/fan_in), LayerNorm weight ~ 1 + N(0, 0.01)).
    """
    if text_width % text_heads != 0:
        raise ValueError("text_width must be divisible by text_heads")
    if D % sgnm_heads != 0:
        raise ValueError("D must be divisible by sgnm_heads")
    layout = official_layout(
        D,
        text_width,
        text_layers,
        vocab,
        context,
        temporal_layers,
        text_adapt_until,
        num_prototypes,
        decoder_depth,
        T,
        sgnm_heads=sgnm_heads,
        gc_hidden=gc_hidden,
        include_clip_alias=include_clip_alias,
    )
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for key, shape in layout.items():
        if key.startswith("clip_adapter.clipmodel."):
            sd[key] = sd["clipmodel." + key[len("clip_adapter.clipmodel.") :]]  # alias, same tensor
        else:
            sd[key] = _random_value(key, shape, g, dtype)
    return sd


def make_random_features(
    n: int, D: int, seed: int = 0, segment: int = 12, noise: float = 0.35, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Snippet features [n, D] with temporal structure: piecewise-constant segments (random
    length around ``segment``) of a random direction plus noise, so that cosine similarities
    above the 0.7 graph threshold (C.2) actually occur, like real CLIP features do."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    while len(rows) < n:
        length = int(torch.randint(max(1, segment // 2), segment + segment // 2 + 1, (1,), generator=g))
        base = torch.randn(D, generator=g, dtype=torch.float64)
        for _ in range(length):
            rows.append(base + noise * torch.randn(D, generator=g, dtype=torch.float64))
    return torch.stack(rows[:n]).to(dtype)
