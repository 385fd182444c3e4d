"""Naive, independent reference implementation of the DSANet forward pass (test oracle).

Written only from ``shared/spec/DSANET.md`` (sections A.4, C.0-C.8 and E.1); it deliberately
imports nothing from the project's ``model`` package and does not use open_clip: the CLIP text
transformer is re-implemented here with plain torch ops. Clarity wins over speed everywhere:
per-sequence / per-head / per-chunk behaviour is written as explicit Python loops and every
formula of the spec is transcribed literally.

The state dict ``sd`` uses the OFFICIAL key names (``official_state_dict_*.json``), e.g.
``temporal.resblocks.0.attn.in_proj_weight``, ``gc1.residual.weight``,
``clip_adapter.text_adapter.3.fc.0.weight``, ``clipmodel.transformer.resblocks.0.ln_1.weight``,
``video_anomaly_refiner.decoder.0.attn.learn_scale``. Every size (D, T, number of temporal
layers, text width and depth, graph hidden width, MLP widths, number of prototypes, decoder
depth, number of classes) is read from tensor shapes / keys, so full-size (D = 512) and
reduced-width state dicts both work. Head counts are not recorded in the shapes (except the
SGNM ``learn_scale``), so they come from :class:`RefHParams`.

Numerics: everything runs in the dtype of the inputs (cast the state dict and the features to
float64 to get a tight oracle). NOTE: the official code computes LayerNorm in float32 (C.2);
this oracle keeps the input dtype instead, which is what a float64 comparison wants.

Section map:
  * :func:`block_diagonal_mask`            - C.2 step 2 (windowed attention mask)
  * :func:`temporal_transformer`           - C.2 step 2
  * :func:`similarity_adjacency`           - C.2 step 3 (A_sim, per sequence on L_b x L_b)
  * :func:`distance_adjacency`             - C.2 step 3 (A_dist, full grid)
  * :func:`graph_convolution`              - C.2 step 3 (GC(h, A) = A (h W) + R(h))
  * :func:`visual_branch`                  - C.2 (-> v)
  * :func:`coarse_classifier`              - C.3 (-> logits1)
  * :func:`reference_description_embedding`- C.4 steps 1-5 (one description -> f)
  * :func:`reference_text_features`        - C.4 (-> t [C, D])
  * :func:`visual_prompted_logits`         - C.5 (-> logits2)
  * :func:`event_background_logits`        - C.6 (-> logits3, logits4)
  * :func:`sgnm`                           - C.7
  * :func:`reference_forward`              - C.0 (one forward call; C.8: no padding mask)
  * :func:`split_into_chunks`              - A.4 "Testing / inference" (incl. the n % T == 0 quirk)
  * :func:`refine_scores_hierarchical`     - E.1
  * :func:`reference_test_scores`          - A.4 (testing) + E.1 (one video -> per-snippet scores)
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from tests.reference.random_weights import make_random_official_state_dict

__all__ = [
    "UCF_REF_HPARAMS",
    "XD_REF_HPARAMS",
    "RefHParams",
    "block_diagonal_mask",
    "causal_mask",
    "coarse_classifier",
    "distance_adjacency",
    "event_background_logits",
    "graph_convolution",
    "load_class_tokens",
    "make_random_official_state_dict",
    "reference_description_embedding",
    "reference_forward",
    "reference_test_scores",
    "reference_text_features",
    "refine_scores_hierarchical",
    "sgnm",
    "similarity_adjacency",
    "split_into_chunks",
    "temporal_transformer",
    "visual_branch",
    "visual_prompted_logits",
]


@dataclass(frozen=True)
class RefHParams:
    """Hyper-parameters that are not recorded in the state dict (spec C.1)."""

    attn_window: int  # W: 8 UCF, 64 XD (C.2 step 2)
    text_adapt_until: int  # L_a: 3 UCF, 1 XD (C.4 step 3)
    text_mix_weight: float  # t_w: 0.1 UCF, 0.6 XD (C.4 step 3)
    test_temperature: float  # tau: 5.0 UCF, 1.0 XD (E.1)
    visual_heads: int = 1  # heads of the temporal transformer (C.2)
    text_heads: int = 8  # heads of the CLIP text transformer (C.4; 8 for ViT-B/16)
    sgnm_heads: int = 8  # SGNM heads (C.7)
    normal_ratio: float = 0.8  # SGNM normal-snippet fraction (C.7 step 1)
    similarity_threshold: float = 0.7  # C.2 step 3
    pool_scale: float = 10.0  # C.6
    logit_temperature: float = 0.07  # C.5 / C.6


UCF_REF_HPARAMS = RefHParams(attn_window=8, text_adapt_until=3, text_mix_weight=0.1, test_temperature=5.0)
XD_REF_HPARAMS = RefHParams(attn_window=64, text_adapt_until=1, text_mix_weight=0.6, test_temperature=1.0)

# LayerNorm eps: 1e-5 in the main model and the CLIP text tower (C.2, C.4), 1e-8 in SGNM (C.7).
MAIN_LN_EPS = 1e-5
SGNM_LN_EPS = 1e-8


# ----------------------------------------------------------------------------------------------
# small primitives (spec notation section)
# ----------------------------------------------------------------------------------------------


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """QuickGELU(x) = x * sigmoid(1.702 x)."""
    return x * torch.sigmoid(1.702 * x)


def exact_gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU, exact erf form (SGNM MLPs, C.7): x * 0.5 * (1 + erf(x / sqrt(2)))."""
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def leaky_relu_001(x: torch.Tensor) -> torch.Tensor:
    """LeakyReLU with negative slope 0.01 (text adapters, C.4)."""
    return torch.where(x >= 0, x, 0.01 * x)


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """norm(x) = x / ||x||_2 along the last axis (no epsilon, as in the spec's notation)."""
    return x / torch.sqrt(torch.sum(x * x, dim=-1, keepdim=True))


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos(a, b) for two vectors = norm(a) . norm(b)."""
    return torch.dot(l2_normalise(a), l2_normalise(b))


def layer_norm(x: torch.Tensor, sd: dict[str, torch.Tensor], prefix: str, eps: float) -> torch.Tensor:
    weight = sd[prefix + ".weight"]
    return F.layer_norm(x, (weight.shape[0],), weight, sd[prefix + ".bias"], eps)


def linear(x: torch.Tensor, sd: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """y = x W^T + b (bias optional)."""
    return F.linear(x, sd[prefix + ".weight"], sd.get(prefix + ".bias"))


def _count_indexed(sd: dict[str, torch.Tensor], pattern: str) -> int:
    """Number of distinct indices i for which some key matches ``pattern`` (which has one (\\d+))."""
    regex = re.compile(pattern)
    indices = set()
    for key in sd:
        m = regex.fullmatch(key)
        if m is not None:
            indices.add(int(m.group(1)))
    if indices and indices != set(range(len(indices))):
        raise ValueError(f"non-contiguous indices for {pattern}: {sorted(indices)}")
    return len(indices)


def _visual_length(sd: dict[str, torch.Tensor]) -> int:
    """T = number of rows of the position table (C.2 step 1)."""
    return sd["frame_position_embeddings.weight"].shape[0]


_CLASS_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "class_descriptions.json"


def load_class_tokens(dataset: str, path: str | Path = _CLASS_FILE) -> list[list[list[int]]]:
    """Token ids per class (section G), in class order: ``tokens[c][s]`` = ids of description s."""
    data = json.loads(Path(path).read_text())[dataset]
    return [[list(ids) for ids in data["token_ids"][name]] for name in data["class_order"]]


# ----------------------------------------------------------------------------------------------
# C.2 visual branch
# ----------------------------------------------------------------------------------------------


def block_diagonal_mask(T: int, window: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask M[i, j] = 0 if floor(i/W) == floor(j/W) else -inf (C.2 step 2)."""
    rows = []
    for i in range(T):
        rows.append([0.0 if (i // window) == (j // window) else float("-inf") for j in range(T)])
    return torch.tensor(rows, dtype=dtype)


def causal_mask(context: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive CLIP text mask: 0 on and below the diagonal, -inf above it (C.4 step 3)."""
    rows = []
    for i in range(context):
        rows.append([float("-inf") if j > i else 0.0 for j in range(context)])
    return torch.tensor(rows, dtype=dtype)


def multi_head_attention(
    x: torch.Tensor, sd: dict[str, torch.Tensor], prefix: str, heads: int, mask: torch.Tensor
) -> torch.Tensor:
    """nn.MultiheadAttention semantics for one sequence x [N, W] (self-attention).

    in_proj splits into q | k | v, each head h uses columns [h*dh, (h+1)*dh), scores are
    q_h k_h^T / sqrt(dh) + mask, softmax over keys, heads concatenated, then out_proj.
    """
    width = x.shape[-1]
    if width % heads != 0:
        raise ValueError(f"width {width} not divisible by {heads} heads")
    dh = width // heads
    w_in = sd[prefix + ".in_proj_weight"]
    b_in = sd[prefix + ".in_proj_bias"]
    q = F.linear(x, w_in[0:width], b_in[0:width])
    k = F.linear(x, w_in[width : 2 * width], b_in[width : 2 * width])
    v = F.linear(x, w_in[2 * width : 3 * width], b_in[2 * width : 3 * width])
    head_outputs = []
    for h in range(heads):
        cols = slice(h * dh, (h + 1) * dh)
        scores = (q[:, cols] @ k[:, cols].T) / math.sqrt(dh) + mask
        weights = F.softmax(scores, dim=-1)
        head_outputs.append(weights @ v[:, cols])
    concat = torch.cat(head_outputs, dim=-1)
    return F.linear(concat, sd[prefix + ".out_proj.weight"], sd[prefix + ".out_proj.bias"])


def residual_attention_block(
    x: torch.Tensor, sd: dict[str, torch.Tensor], prefix: str, heads: int, mask: torch.Tensor
) -> torch.Tensor:
    """Pre-LN block (CLIP ResidualAttentionBlock): x + Attn(LN1 x), then x + MLP(LN2 x), QuickGELU."""
    x = x + multi_head_attention(layer_norm(x, sd, prefix + ".ln_1", MAIN_LN_EPS), sd, prefix + ".attn", heads, mask)
    h = layer_norm(x, sd, prefix + ".ln_2", MAIN_LN_EPS)
    h = linear(quick_gelu(linear(h, sd, prefix + ".mlp.c_fc")), sd, prefix + ".mlp.c_proj")
    return x + h


def temporal_transformer(x: torch.Tensor, sd: dict[str, torch.Tensor], hp: RefHParams) -> torch.Tensor:
    """C.2 step 2 on x [B, T, D] (position embedding already added). No final LayerNorm."""
    B, T, _ = x.shape
    layers = _count_indexed(sd, r"temporal\.resblocks\.(\d+)\.ln_1\.weight")
    mask = block_diagonal_mask(T, hp.attn_window, x.dtype)
    outputs = []
    for b in range(B):  # every sequence on its own: no key-padding mask, padded rows take part
        h = x[b]
        for layer in range(layers):
            h = residual_attention_block(h, sd, f"temporal.resblocks.{layer}", hp.visual_heads, mask)
        outputs.append(h)
    return torch.stack(outputs, dim=0)


def similarity_adjacency(x: torch.Tensor, lengths: list[int], threshold: float = 0.7) -> torch.Tensor:
    """A_sim [B, T, T] (C.2 step 3).

    S = (x x^T) / (||x|| ||x||^T + 1e-20); for each b, on the top-left L_b x L_b block only:
    keep S where S > threshold else 0 (zeros, not -inf), then softmax over the last axis.
    Everything outside that block is 0.
    """
    B, T, _ = x.shape
    out = torch.zeros(B, T, T, dtype=x.dtype)
    for b in range(B):
        xb = x[b]
        norms = torch.sqrt(torch.sum(xb * xb, dim=-1, keepdim=True))  # [T, 1]
        S = (xb @ xb.T) / (norms @ norms.T + 1e-20)
        L = int(lengths[b])
        block = S[:L, :L]
        block = torch.where(block > threshold, block, torch.zeros_like(block))
        block = F.softmax(block, dim=-1)
        out[b, :L, :L] = block
    return out


def distance_adjacency(T: int, dtype: torch.dtype) -> torch.Tensor:
    """A_dist[i, j] = exp(-|i - j| / e) over the full T x T grid, unnormalised (C.2 step 3)."""
    idx = torch.arange(T, dtype=dtype)
    dist = torch.abs(idx[:, None] - idx[None, :])
    return torch.exp(-dist / math.e)


def graph_convolution(h: torch.Tensor, A: torch.Tensor, sd: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """GC(h, A) = A (h W) + R(h) for ONE sequence h [T, in] (C.2 step 3).

    W is stored [in, out] (used as h @ W, no bias). R is Conv1d(in, out, 5, padding 2) along time
    (with bias) when in != out, identity when in == out.
    """
    W = sd[name + ".weight"]
    fan_in, fan_out = W.shape
    out = A @ (h @ W)
    if fan_in != fan_out:
        conv_w = sd[name + ".residual.weight"]
        conv_b = sd[name + ".residual.bias"]
        residual = F.conv1d(h.T.unsqueeze(0), conv_w, conv_b, padding=2)[0].T  # [T, out]
    else:
        if name + ".residual.weight" in sd:
            raise ValueError(f"{name}: unexpected conv residual for a square graph convolution")
        residual = h
    return out + residual


def visual_branch(
    sd: dict[str, torch.Tensor], features: torch.Tensor, lengths: list[int], hp: RefHParams
) -> dict[str, torch.Tensor]:
    """C.2: features [B, T, D] -> v [B, T, D] (plus intermediates for debugging)."""
    B, T, _ = features.shape
    pos = sd["frame_position_embeddings.weight"]
    x_pos = torch.stack([features[b] + pos for b in range(B)], dim=0)  # row t gets position t
    x = temporal_transformer(x_pos, sd, hp)
    adj_sim = similarity_adjacency(x, lengths, hp.similarity_threshold)
    adj_dist = distance_adjacency(T, x.dtype)  # identical for every sequence
    h_sim_all, h_dist_all, v_all = [], [], []
    for b in range(B):
        h_sim = quick_gelu(
            graph_convolution(quick_gelu(graph_convolution(x[b], adj_sim[b], sd, "gc1")), adj_sim[b], sd, "gc2")
        )
        h_dist = quick_gelu(
            graph_convolution(quick_gelu(graph_convolution(x[b], adj_dist, sd, "gc3")), adj_dist, sd, "gc4")
        )
        v_b = linear(torch.cat([h_sim, h_dist], dim=-1), sd, "linear")  # no activation
        h_sim_all.append(h_sim)
        h_dist_all.append(h_dist)
        v_all.append(v_b)
    return {
        "x_pos": x_pos,
        "x_temporal": x,
        "adj_sim": adj_sim,
        "adj_dist": adj_dist,
        "h_sim": torch.stack(h_sim_all),
        "h_dist": torch.stack(h_dist_all),
        "v": torch.stack(v_all),
    }


# ----------------------------------------------------------------------------------------------
# C.3 coarse classifier
# ----------------------------------------------------------------------------------------------


def mlp_quick_gelu(x: torch.Tensor, sd: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """c_proj(QuickGELU(c_fc(x)))."""
    return linear(quick_gelu(linear(x, sd, prefix + ".c_fc")), sd, prefix + ".c_proj")


def coarse_classifier(sd: dict[str, torch.Tensor], v: torch.Tensor) -> torch.Tensor:
    """logits1 = classifier(v + mlp2(v)) -> [B, T, 1] (C.3)."""
    return linear(v + mlp_quick_gelu(v, sd, "mlp2"), sd, "classifier")


# ----------------------------------------------------------------------------------------------
# C.4 text branch
# ----------------------------------------------------------------------------------------------


def reference_description_embedding(sd: dict[str, torch.Tensor], ids: list[int], hp: RefHParams) -> torch.Tensor:
    """C.4 steps 1-5 for one description: token ids [SOT ... EOT] (unpadded) -> f [D] (unnormalised)."""
    pos = sd["clipmodel.positional_embedding"]
    context = pos.shape[0]
    if len(ids) > context:
        raise ValueError(f"{len(ids)} tokens exceed the context length {context}")
    padded = list(ids) + [0] * (context - len(ids))  # step 1: zero padding to the context length
    token_ids = torch.tensor(padded, dtype=torch.long)
    eot = int(torch.argmax(token_ids))  # EOT position = argmax of the token ids

    x = sd["clipmodel.token_embedding.weight"][token_ids] + pos  # step 2: [context, width]

    causal = causal_mask(context, x.dtype)

    layers = _count_indexed(sd, r"clipmodel\.transformer\.resblocks\.(\d+)\.ln_1\.weight")
    t_w = hp.text_mix_weight
    for i in range(layers):  # step 3
        x = residual_attention_block(x, sd, f"clipmodel.transformer.resblocks.{i}", hp.text_heads, causal)
        if i < hp.text_adapt_until:
            A_i = sd[f"clip_adapter.text_adapter.{i}.fc.0.weight"]
            a = leaky_relu_001(x @ A_i.T)
            x_norm = torch.sqrt(torch.sum(x * x, dim=-1, keepdim=True))  # per token
            a_norm = torch.sqrt(torch.sum(a * a, dim=-1, keepdim=True))
            a = a * x_norm / (a_norm + 1e-6)
            x = t_w * a + (1.0 - t_w) * x

    x = layer_norm(x, sd, "clipmodel.ln_final", MAIN_LN_EPS)  # step 4
    x_eot = x[eot]
    P = sd[f"clip_adapter.text_adapter.{hp.text_adapt_until}.fc.0.weight"]  # step 5 ([D, width])
    return leaky_relu_001(x_eot @ P.T)


def reference_text_features(sd: dict[str, torch.Tensor], tokens: list[list[list[int]]], hp: RefHParams) -> torch.Tensor:
    """C.4: ``tokens[c]`` = list of token-id lists of class c -> t [C, D], t_c = norm(mean_s f_s)."""
    n_adapters = _count_indexed(sd, r"clip_adapter\.text_adapter\.(\d+)\.fc\.0\.weight")
    if n_adapters != hp.text_adapt_until + 1:
        raise ValueError(f"state dict has {n_adapters} text adapters, hp.text_adapt_until={hp.text_adapt_until}")
    rows = []
    for descriptions in tokens:
        if not descriptions:
            raise ValueError("every class needs at least one description")
        fs = [reference_description_embedding(sd, ids, hp) for ids in descriptions]
        mean = torch.stack(fs, dim=0).mean(dim=0)
        rows.append(l2_normalise(mean))
    return torch.stack(rows, dim=0)


# ----------------------------------------------------------------------------------------------
# C.5 / C.6 logits2, logits3, logits4
# ----------------------------------------------------------------------------------------------


def visual_prompted_logits(
    sd: dict[str, torch.Tensor], v: torch.Tensor, logits1: torch.Tensor, t: torch.Tensor, hp: RefHParams
) -> dict[str, torch.Tensor]:
    """C.5 -> logits2 [B, T, C] (+ u [B, D] and t' [B, C, D])."""
    B, T, _ = v.shape
    C = t.shape[0]
    logits2 = torch.empty(B, T, C, dtype=v.dtype)
    u_all, t_prime_all = [], []
    for b in range(B):
        u_b = torch.zeros_like(v[b, 0])
        for s in range(T):  # raw logits as weights, all T rows including padding
            u_b = u_b + logits1[b, s, 0] * v[b, s]
        u_hat = l2_normalise(u_b)
        t_prime = torch.stack([t[c] + u_hat for c in range(C)], dim=0)
        t_prime = t_prime + mlp_quick_gelu(t_prime, sd, "mlp1")
        for s in range(T):
            for c in range(C):
                logits2[b, s, c] = cosine(v[b, s], t_prime[c]) / hp.logit_temperature
        u_all.append(u_b)
        t_prime_all.append(t_prime)
    return {"logits2": logits2, "u": torch.stack(u_all), "text_prompted": torch.stack(t_prime_all)}


def event_background_logits(
    v: torch.Tensor, logits1: torch.Tensor, t: torch.Tensor, hp: RefHParams
) -> dict[str, torch.Tensor]:
    """C.6 -> logits3, logits4 [B, 1, C] against the PLAIN class embeddings t."""
    B, T, _ = v.shape
    C = t.shape[0]
    logits3 = torch.empty(B, 1, C, dtype=v.dtype)
    logits4 = torch.empty(B, 1, C, dtype=v.dtype)
    f_evt_all, f_bkg_all = [], []
    for b in range(B):
        p = torch.sigmoid(logits1[b, :, 0])  # [T]
        a = torch.exp(hp.pool_scale * p) - 1.0
        n = torch.exp(hp.pool_scale * (1.0 - p)) - 1.0
        a = a / torch.clamp(torch.sum(a), min=1e-12)  # L1 over all T rows including padding
        n = n / torch.clamp(torch.sum(n), min=1e-12)
        f_evt = torch.zeros_like(v[b, 0])
        f_bkg = torch.zeros_like(v[b, 0])
        for s in range(T):
            f_evt = f_evt + a[s] * v[b, s]
            f_bkg = f_bkg + n[s] * v[b, s]
        for c in range(C):
            logits3[b, 0, c] = cosine(f_evt, t[c]) / hp.logit_temperature
            logits4[b, 0, c] = cosine(f_bkg, t[c]) / hp.logit_temperature
        f_evt_all.append(f_evt)
        f_bkg_all.append(f_bkg)
    return {"logits3": logits3, "logits4": logits4, "f_evt": torch.stack(f_evt_all), "f_bkg": torch.stack(f_bkg_all)}


# ----------------------------------------------------------------------------------------------
# C.7 SGNM
# ----------------------------------------------------------------------------------------------


def _sgnm_mlp(x: torch.Tensor, sd: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """fc2(GELU_erf(fc1(x)))."""
    return linear(exact_gelu(linear(x, sd, prefix + ".fc1")), sd, prefix + ".fc2")


def _split_heads(x: torch.Tensor, heads: int) -> list[torch.Tensor]:
    dh = x.shape[-1] // heads
    return [x[:, h * dh : (h + 1) * dh] for h in range(heads)]


def _extractor_block(
    P0: torch.Tensor, S: torch.Tensor, sd: dict[str, torch.Tensor], prefix: str, heads: int
) -> torch.Tensor:
    """C.7 step 2 for one sequence: P0 [M, D], S [k, D] -> P [M, D]."""
    D = P0.shape[-1]
    q = linear(layer_norm(P0, sd, prefix + ".norm1", SGNM_LN_EPS), sd, prefix + ".attn.q")
    kv = linear(layer_norm(S, sd, prefix + ".norm1", SGNM_LN_EPS), sd, prefix + ".attn.kv")  # same norm1
    k, val = kv[:, :D], kv[:, D:]  # first D outputs keys, last D values
    dh = D // heads
    outs = []
    for qh, kh, vh in zip(_split_heads(q, heads), _split_heads(k, heads), _split_heads(val, heads), strict=True):
        weights = F.softmax((qh @ kh.T) / math.sqrt(dh), dim=-1)
        outs.append(weights @ vh)
    P1 = P0 + linear(torch.cat(outs, dim=-1), sd, prefix + ".attn.proj")
    return P1 + _sgnm_mlp(layer_norm(P1, sd, prefix + ".norm2", SGNM_LN_EPS), sd, prefix + ".mlp")


def _decoder_block(
    z: torch.Tensor, P: torch.Tensor, sd: dict[str, torch.Tensor], prefix: str, heads: int
) -> torch.Tensor:
    """C.7 step 5 for one sequence: z [T, D], P [M, D] -> z [T, D]. No residual around attention."""
    D = z.shape[-1]
    scale = sd[prefix + ".attn.learn_scale"]  # [heads, 1, 1]
    q = linear(layer_norm(z, sd, prefix + ".norm1", SGNM_LN_EPS), sd, prefix + ".attn.q")
    kv = linear(layer_norm(P, sd, prefix + ".norm1", SGNM_LN_EPS), sd, prefix + ".attn.kv")
    k, val = kv[:, :D], kv[:, D:]
    outs = []
    for h, (qh, kh, vh) in enumerate(
        zip(_split_heads(q, heads), _split_heads(k, heads), _split_heads(val, heads), strict=True)
    ):
        qh = l2_normalise(qh)  # norm_h: L2-normalise each head vector
        kh = l2_normalise(kh)
        A = torch.relu((qh @ kh.T) * scale[h, 0, 0])  # no softmax, no 1/sqrt(d)
        outs.append(A @ vh)
    y = linear(torch.cat(outs, dim=-1), sd, prefix + ".attn.proj")
    z = y  # the attention step has no residual
    return z + _sgnm_mlp(layer_norm(z, sd, prefix + ".norm2", SGNM_LN_EPS), sd, prefix + ".mlp")


def sgnm(
    sd: dict[str, torch.Tensor], v: torch.Tensor, logits1: torch.Tensor, hp: RefHParams
) -> dict[str, torch.Tensor]:
    """C.7: -> reconstructed [B, T, D], prototypes [B, M, D], g_loss (scalar), selected S [B, k, D]."""
    B, T, _ = v.shape
    pre = "video_anomaly_refiner"
    heads = hp.sgnm_heads
    depth = _count_indexed(sd, pre + r"\.decoder\.(\d+)\.norm1\.weight")
    for i in range(depth):
        if sd[f"{pre}.decoder.{i}.attn.learn_scale"].shape[0] != heads:
            raise ValueError("hp.sgnm_heads does not match decoder learn_scale")
    n_extractor = _count_indexed(sd, pre + r"\.dnp_extractor\.(\d+)\.norm1\.weight")
    prototypes0 = sd[pre + ".video_prototypes"]  # [M, D]
    k = int(T * hp.normal_ratio)

    recon_all, proto_all, sel_all = [], [], []
    per_snippet_losses = []
    for b in range(B):
        # step 1: the k positions with the lowest sigmoid(logits1), padding included
        scores = torch.sigmoid(logits1[b, :, 0])
        order = torch.argsort(scores, stable=True)
        S = v[b, order[:k]]  # [k, D]
        # step 2: prototype extraction
        P = prototypes0.clone()
        for e in range(n_extractor):
            P = _extractor_block(P, S, sd, f"{pre}.dnp_extractor.{e}", heads)
        # step 3: compactness loss terms min_m (1 - cos(S_s, P_m))
        for s in range(k):
            dists = torch.stack([1.0 - cosine(S[s], P[m]) for m in range(P.shape[0])])
            per_snippet_losses.append(torch.min(dists))
        # step 4: bottleneck, no residual
        z = mlp_quick_gelu(v[b], sd, pre + ".bottleneck")
        # step 5: decoder
        for i in range(depth):
            z = _decoder_block(z, P, sd, f"{pre}.decoder.{i}", heads)
        recon_all.append(z)
        proto_all.append(P)
        sel_all.append(S)
    g_loss = torch.stack(per_snippet_losses).mean()
    return {
        "reconstructed": torch.stack(recon_all),
        "prototypes": torch.stack(proto_all),
        "g_loss": g_loss,
        "selected_normal": torch.stack(sel_all),
    }


# ----------------------------------------------------------------------------------------------
# C.0 one forward call
# ----------------------------------------------------------------------------------------------


def reference_forward(
    sd: dict[str, torch.Tensor],
    features: torch.Tensor,
    lengths: list[int],
    tokens: list[list[list[int]]],
    hp: RefHParams,
    with_sgnm: bool = False,
    return_intermediates: bool = False,
    text_features: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """C.0: features [B, T, D] (zero padded to T) and valid lengths -> outputs.

    Keys: 'text_features' [C, D], 'logits1' [B, T, 1], 'logits2' [B, T, C], 'logits3' [B, 1, C],
    'logits4' [B, 1, C], 'v' [B, T, D]; with ``with_sgnm`` also 'reconstructed' [B, T, D],
    'prototypes' [B, M, D], 'g_loss' (0-dim). ``return_intermediates`` adds debugging tensors
    ('x_pos', 'x_temporal', 'adj_sim', 'adj_dist', 'h_sim', 'h_dist', 'u', 'text_prompted',
    'f_evt', 'f_bkg' and, with SGNM, 'selected_normal'). ``text_features`` may pass a
    precomputed ``reference_text_features(sd, tokens, hp)`` (the official eval-mode cache, C.4);
    ``tokens`` is then ignored.
    """
    T = _visual_length(sd)
    if features.dim() != 3 or features.shape[1] != T:
        raise ValueError(f"features must be [B, {T}, D], got {tuple(features.shape)}")
    lengths = [int(n) for n in lengths]
    if len(lengths) != features.shape[0]:
        raise ValueError("one length per sequence")

    t = reference_text_features(sd, tokens, hp) if text_features is None else text_features
    vis = visual_branch(sd, features, lengths, hp)
    v = vis["v"]
    logits1 = coarse_classifier(sd, v)
    prompted = visual_prompted_logits(sd, v, logits1, t, hp)
    evt = event_background_logits(v, logits1, t, hp)

    out = {
        "text_features": t,
        "logits1": logits1,
        "logits2": prompted["logits2"],
        "logits3": evt["logits3"],
        "logits4": evt["logits4"],
        "v": v,
    }
    if with_sgnm:
        dnp = sgnm(sd, v, logits1, hp)
        out["reconstructed"] = dnp["reconstructed"]
        out["prototypes"] = dnp["prototypes"]
        out["g_loss"] = dnp["g_loss"]
        if return_intermediates:
            out["selected_normal"] = dnp["selected_normal"]
    if return_intermediates:
        for key in ("x_pos", "x_temporal", "adj_sim", "adj_dist", "h_sim", "h_dist"):
            out[key] = vis[key]
        out["u"] = prompted["u"]
        out["text_prompted"] = prompted["text_prompted"]
        out["f_evt"] = evt["f_evt"]
        out["f_bkg"] = evt["f_bkg"]
    return out


# ----------------------------------------------------------------------------------------------
# A.4 (testing) + E.1
# ----------------------------------------------------------------------------------------------


def split_into_chunks(features: torch.Tensor, T: int) -> tuple[list[torch.Tensor], list[int]]:
    """A.4 testing: [n, D] -> k chunks [T, D] (zero padded) and their valid lengths.

    n < T: one chunk, length n. n >= T: k = floor(n/T) + 1 chunks; full chunks have length T,
    the last one n - T(k-1), except when that is 0 (n multiple of T): the last chunk is all zeros
    and gets length T (the official quirk).
    """
    n, D = features.shape
    if n < 1:
        raise ValueError("a video needs at least one snippet")
    k = 1 if n < T else n // T + 1
    chunks, lengths = [], []
    for c in range(k):
        chunk = torch.zeros(T, D, dtype=features.dtype)
        rows = features[c * T : (c + 1) * T]
        chunk[: rows.shape[0]] = rows
        chunks.append(chunk)
        if n < T:
            lengths.append(n)
        elif c < k - 1:
            lengths.append(T)
        else:
            last = n - T * (k - 1)
            lengths.append(T if last == 0 else last)
    return chunks, lengths


def refine_scores_hierarchical(logits1: torch.Tensor, logits2: torch.Tensor, tau: float) -> torch.Tensor:
    """E.1: logits1 [n, 1] or [n], logits2 [n, C] -> P [n, C]."""
    if logits1.dim() == 2:
        logits1 = logits1[:, 0]
    n, C = logits2.shape
    P = torch.empty(n, C, dtype=logits2.dtype)
    for s in range(n):
        p_abn = torch.sigmoid(logits1[s] / tau)
        pi = F.softmax(logits2[s] / tau, dim=-1)
        abnormal_mass = torch.sum(pi[1:]) + 1e-12
        P[s, 0] = 1.0 - p_abn
        for c in range(1, C):
            P[s, c] = p_abn * (pi[c] / abnormal_mass)
    return P


def reference_test_scores(
    sd: dict[str, torch.Tensor], features: torch.Tensor, tokens: list[list[list[int]]], hp: RefHParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """A.4 testing + E.1 for ONE video features [n, D] -> (anomaly [n], probs [n, C]).

    Each chunk is run through :func:`reference_forward` on its own (chunks are independent in
    the official batched run as well), outputs are concatenated to [k*T, ...] and cut to n.
    """
    T = _visual_length(sd)
    n = features.shape[0]
    chunks, lengths = split_into_chunks(features, T)
    t = reference_text_features(sd, tokens, hp)  # depends only on the weights: computed once
    logits1_parts, logits2_parts = [], []
    for chunk, length in zip(chunks, lengths, strict=True):
        out = reference_forward(sd, chunk.unsqueeze(0), [length], tokens, hp, text_features=t)
        logits1_parts.append(out["logits1"][0])  # [T, 1]
        logits2_parts.append(out["logits2"][0])  # [T, C]
    logits1 = torch.cat(logits1_parts, dim=0)[:n]
    logits2 = torch.cat(logits2_parts, dim=0)[:n]
    anomaly = torch.sigmoid(logits1[:, 0])
    probs = refine_scores_hierarchical(logits1, logits2, hp.test_temperature)
    return anomaly, probs
