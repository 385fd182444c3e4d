"""Self-checks of the naive DSANet oracle against properties the spec guarantees by itself.

Independent of the project's ``model`` package: only ``tests.reference`` is imported. Small
random official-layout state dicts (D = 32, text width 32, 2 text layers with 4 heads, vocab 100,
context 16, T = 64) in float64.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.reference.naive_dsanet import (
    RefHParams,
    block_diagonal_mask,
    distance_adjacency,
    load_class_tokens,
    make_random_official_state_dict,
    reference_description_embedding,
    reference_forward,
    reference_test_scores,
    reference_text_features,
    refine_scores_hierarchical,
    similarity_adjacency,
    split_into_chunks,
)
from tests.reference.random_weights import make_random_features, official_layout

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"  # committed copies of shared/spec and shared/data files

T = 64
D = 32
SOT, EOT = 98, 99
# three classes; class 2 has two descriptions (C.4 step 6: mean of the description embeddings)
TOKENS = [[[SOT, 5, EOT]], [[SOT, 7, 8, EOT]], [[SOT, 9, EOT], [SOT, 10, 11, 12, EOT]]]
UCF_LIKE = RefHParams(attn_window=8, text_adapt_until=2, text_mix_weight=0.1, test_temperature=5.0, text_heads=4)
XD_LIKE = RefHParams(attn_window=16, text_adapt_until=1, text_mix_weight=0.6, test_temperature=1.0, text_heads=4)


def _f64(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.to(torch.float64) for k, v in sd.items()}


@pytest.fixture(scope="module")
def sd_ucf() -> dict[str, torch.Tensor]:
    return _f64(make_random_official_state_dict(D, 32, 2, 4, 100, 16, 2, 2, 4, 2, T, 0))


@pytest.fixture(scope="module")
def sd_xd_wide_text() -> dict[str, torch.Tensor]:
    # D = 48 with text width 32: the final projection adapter is [48, 32]
    return _f64(make_random_official_state_dict(48, 32, 2, 4, 100, 16, 1, 1, 4, 2, T, 1))


def _committed_fixture(name: str) -> Path:
    """A file of tests/fixtures; missing, it fails the test (they are committed, so every clone has them)."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.fail(f"committed fixture tests/fixtures/{name} is missing: restore it with `git checkout -- "
                    f"tests/fixtures/{name}`", pytrace=False)
    return path


def _batch(lengths: list[int], seed: int) -> torch.Tensor:
    feats = torch.zeros(len(lengths), T, D, dtype=torch.float64)
    for b, n in enumerate(lengths):
        feats[b, :n] = make_random_features(n, D, seed=seed + b, dtype=torch.float64)
    return feats


# ------------------------------------------------------------------------------ state-dict layout


@pytest.mark.parametrize("dataset, temporal_layers, l_a", [("ucf", 2, 3), ("xd", 1, 1)])
def test_layout_matches_official_manifest(dataset: str, temporal_layers: int, l_a: int) -> None:
    path = _committed_fixture(f"official_state_dict_{dataset}.json")
    manifest = json.loads(path.read_text())
    expected = [(k, tuple(shape)) for k, (shape, _dtype) in manifest.items() if ".visual." not in k]
    layout = official_layout(512, 512, 12, 49408, 77, temporal_layers, l_a, 16, 8, 256)
    assert list(layout.items()) == expected
    assert all(dtype == "float32" for _shape, dtype in manifest.values())


def test_random_state_dict_aliases_and_dtype() -> None:
    sd = make_random_official_state_dict(D, 32, 2, 4, 100, 16, 2, 2, 4, 2, T, 3)
    assert sd["clip_adapter.clipmodel.token_embedding.weight"] is sd["clipmodel.token_embedding.weight"]
    assert all(v.dtype == torch.float32 for v in sd.values())
    again = make_random_official_state_dict(D, 32, 2, 4, 100, 16, 2, 2, 4, 2, T, 3)
    assert all(torch.equal(sd[k], again[k]) for k in sd)  # seeded


def test_load_class_tokens() -> None:
    class_file = _committed_fixture("class_descriptions.json")
    ucf, xd = load_class_tokens("ucf", class_file), load_class_tokens("xd", class_file)
    assert len(ucf) == 14 and len(xd) == 7
    for ids in [d for cls in ucf + xd for d in cls]:
        assert ids[0] == 49406 and ids[-1] == 49407 and max(ids) == 49407


# ------------------------------------------------------------------------------ text branch (C.4)


def test_text_features_unit_norm_and_description_mean(sd_ucf: dict[str, torch.Tensor]) -> None:
    t = reference_text_features(sd_ucf, TOKENS, UCF_LIKE)
    assert t.shape == (3, D) and t.dtype == torch.float64
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-12)
    f1 = reference_description_embedding(sd_ucf, TOKENS[2][0], UCF_LIKE)
    f2 = reference_description_embedding(sd_ucf, TOKENS[2][1], UCF_LIKE)
    mean = (f1 + f2) / 2
    torch.testing.assert_close(t[2], mean / mean.norm(), rtol=0, atol=1e-12)
    # the two descriptions really differ, so the mean is a real test
    assert not torch.allclose(f1 / f1.norm(), f2 / f2.norm())


def test_text_causal_mask_and_eot_argmax(sd_ucf: dict[str, torch.Tensor]) -> None:
    base = reference_description_embedding(sd_ucf, [SOT, 5, EOT], UCF_LIKE)
    # tokens after the EOT cannot reach it through the causal mask; EOT is still the argmax
    trailing = reference_description_embedding(sd_ucf, [SOT, 5, EOT, 7, 8], UCF_LIKE)
    torch.testing.assert_close(trailing, base, rtol=0, atol=1e-12)
    # a token before the EOT does change it
    other = reference_description_embedding(sd_ucf, [SOT, 6, EOT], UCF_LIKE)
    assert not torch.allclose(other, base)


def test_text_width_differs_from_visual_width(sd_xd_wide_text: dict[str, torch.Tensor]) -> None:
    assert sd_xd_wide_text["clip_adapter.text_adapter.1.fc.0.weight"].shape == (48, 32)
    t = reference_text_features(sd_xd_wide_text, TOKENS, XD_LIKE)
    assert t.shape == (3, 48)
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-12)


def test_text_adapter_count_must_match_hparams(sd_ucf: dict[str, torch.Tensor]) -> None:
    with pytest.raises(ValueError):
        reference_text_features(sd_ucf, TOKENS, XD_LIKE)  # sd has L_a = 2, XD_LIKE says 1


# ------------------------------------------------------------------------------ graphs and masks (C.2)


def test_block_diagonal_mask() -> None:
    m = block_diagonal_mask(T, 8, torch.float64)
    assert int((m == 0).sum()) == T * 8
    assert m[7, 0] == 0 and m[7, 8] == -math.inf and m[8, 15] == 0 and m[8, 7] == -math.inf


def test_distance_adjacency_full_grid() -> None:
    A = distance_adjacency(T, torch.float64)
    assert A.shape == (T, T)
    torch.testing.assert_close(A, A.T)
    torch.testing.assert_close(torch.diagonal(A), torch.ones(T, dtype=torch.float64))
    assert math.isclose(float(A[0, 1]), math.exp(-1 / math.e), rel_tol=1e-14)
    assert math.isclose(float(A[3, T - 1]), math.exp(-(T - 4) / math.e), rel_tol=1e-14)
    assert float(A.sum(dim=1)[T // 2]) > 1.5  # not normalised


def test_similarity_adjacency_rows_and_block(sd_ucf: dict[str, torch.Tensor]) -> None:
    lengths = [T, 40, 1]
    out = reference_forward(sd_ucf, _batch(lengths, 10), lengths, TOKENS, UCF_LIKE, return_intermediates=True)
    A = out["adj_sim"]
    x = out["x_temporal"]
    for b, L in enumerate(lengths):
        torch.testing.assert_close(A[b, :L].sum(dim=-1), torch.ones(L, dtype=torch.float64), rtol=0, atol=1e-12)
        assert torch.all(A[b, L:] == 0) and torch.all(A[b, :, L:] == 0)
        # thresholding to 0 (not -inf): entries with cosine <= 0.7 all get weight e^0 / Z_row
        xn = x[b, :L] / x[b, :L].norm(dim=-1, keepdim=True)
        S = xn @ xn.T
        block = A[b, :L, :L]
        for i in range(L):
            kept = S[i] > 0.7
            Z = torch.sum(torch.exp(torch.where(kept, S[i], torch.zeros_like(S[i]))))
            torch.testing.assert_close(block[i, ~kept], torch.full_like(block[i, ~kept], 1 / float(Z)))
            torch.testing.assert_close(block[i, kept], torch.exp(S[i, kept]) / Z)
    # the structured features exercise both sides of the threshold
    xn = x[0] / x[0].norm(dim=-1, keepdim=True)
    frac = float(((xn @ xn.T) > 0.7).double().mean())
    assert 0.05 < frac < 0.9


def test_similarity_adjacency_zero_rows() -> None:
    # zero (padded) rows: cosine 0/(0+1e-20) = 0 -> below threshold -> uniform weights
    x = torch.zeros(1, 6, 4, dtype=torch.float64)
    A = similarity_adjacency(x, [6])
    torch.testing.assert_close(A[0], torch.full((6, 6), 1 / 6, dtype=torch.float64))


def test_windowed_attention_locality(sd_ucf: dict[str, torch.Tensor]) -> None:
    feats = _batch([T], 20)
    changed = feats.clone()
    changed[0, 8:16] += 1.0  # only window 1 (rows 8..15) changes
    a = reference_forward(sd_ucf, feats, [T], TOKENS, UCF_LIKE, return_intermediates=True)["x_temporal"]
    b = reference_forward(sd_ucf, changed, [T], TOKENS, UCF_LIKE, return_intermediates=True)["x_temporal"]
    same = torch.ones(T, dtype=torch.bool)
    same[8:16] = False
    torch.testing.assert_close(a[0, same], b[0, same], rtol=0, atol=0)
    assert not torch.allclose(a[0, 8:16], b[0, 8:16])


# ------------------------------------------------------------------------------ forward (C.0, C.8)


def test_forward_shapes_dtype_and_sgnm_independence(sd_ucf: dict[str, torch.Tensor]) -> None:
    lengths = [T, 40]
    feats = _batch(lengths, 30)
    plain = reference_forward(sd_ucf, feats, lengths, TOKENS, UCF_LIKE)
    full = reference_forward(sd_ucf, feats, lengths, TOKENS, UCF_LIKE, with_sgnm=True)
    expected = {
        "text_features": (3, D),
        "logits1": (2, T, 1),
        "logits2": (2, T, 3),
        "logits3": (2, 1, 3),
        "logits4": (2, 1, 3),
        "v": (2, T, D),
    }
    assert {k: tuple(v.shape) for k, v in plain.items()} == expected
    for key in expected:
        assert full[key].dtype == torch.float64
        torch.testing.assert_close(full[key], plain[key], rtol=0, atol=0)
    assert full["reconstructed"].shape == (2, T, D)
    assert full["prototypes"].shape == (2, 4, D)
    assert full["g_loss"].dim() == 0 and 0.0 <= float(full["g_loss"]) <= 2.0
    assert torch.isfinite(full["reconstructed"]).all()
    # logits are cosines / 0.07
    assert float(plain["logits2"].abs().max()) <= 1 / 0.07 + 1e-9
    assert float(plain["logits3"].abs().max()) <= 1 / 0.07 + 1e-9


def test_sgnm_selects_lowest_scores(sd_ucf: dict[str, torch.Tensor]) -> None:
    feats = _batch([T], 40)
    out = reference_forward(sd_ucf, feats, [T], TOKENS, UCF_LIKE, with_sgnm=True, return_intermediates=True)
    k = int(T * 0.8)
    sel = out["selected_normal"][0]
    assert sel.shape == (k, D)
    order = torch.argsort(out["logits1"][0, :, 0])
    expected_rows = out["v"][0, order[:k]]
    # same set of rows (order irrelevant)
    assert sorted(map(tuple, sel.tolist())) == sorted(map(tuple, expected_rows.tolist()))


def test_sequences_in_a_batch_are_independent(sd_ucf: dict[str, torch.Tensor]) -> None:
    lengths = [T, 40]
    feats = _batch(lengths, 50)
    both = reference_forward(sd_ucf, feats, lengths, TOKENS, UCF_LIKE, with_sgnm=True)
    alone = reference_forward(sd_ucf, feats[1:], lengths[1:], TOKENS, UCF_LIKE, with_sgnm=True)
    for key in ("logits1", "logits2", "logits3", "logits4", "v", "reconstructed", "prototypes"):
        torch.testing.assert_close(both[key][1:], alone[key], rtol=0, atol=1e-12)


def test_length_and_padding_matter(sd_ucf: dict[str, torch.Tensor]) -> None:
    """C.8: only the similarity graph sees L_b; padded rows still influence valid outputs."""
    feats = _batch([40], 60)
    a = reference_forward(sd_ucf, feats, [40], TOKENS, UCF_LIKE)["logits1"][0, :40]
    b = reference_forward(sd_ucf, feats, [T], TOKENS, UCF_LIKE)["logits1"][0, :40]
    assert not torch.allclose(a, b)
    padded_differently = feats.clone()
    padded_differently[0, 40:] = 0.5
    c = reference_forward(sd_ucf, padded_differently, [40], TOKENS, UCF_LIKE)["logits1"][0, :40]
    assert not torch.allclose(a, c)


# ------------------------------------------------------------------------------ test procedure (A.4, E.1)


def test_split_into_chunks_lengths() -> None:
    def lengths(n: int) -> list[int]:
        chunks, lens = split_into_chunks(torch.ones(n, 2), T)
        assert all(c.shape == (T, 2) for c in chunks)
        return lens

    assert lengths(1) == [1]
    assert lengths(T - 1) == [T - 1]
    assert lengths(T) == [T, T]  # quirk: all-zero last chunk with length T
    assert lengths(T + 5) == [T, 5]
    assert lengths(2 * T) == [T, T, T]
    assert lengths(2 * T + 5) == [T, T, 5]
    chunks, _ = split_into_chunks(torch.ones(T, 2), T)
    assert torch.all(chunks[1] == 0)
    chunks, _ = split_into_chunks(torch.ones(T + 5, 2), T)
    assert torch.all(chunks[1][:5] == 1) and torch.all(chunks[1][5:] == 0)


def test_refinement_formula() -> None:
    g = torch.Generator().manual_seed(0)
    logits1 = 3 * torch.randn(20, 1, generator=g, dtype=torch.float64)
    logits2 = 10 * torch.randn(20, 5, generator=g, dtype=torch.float64)
    for tau in (1.0, 5.0):
        P = refine_scores_hierarchical(logits1, logits2, tau)
        torch.testing.assert_close(P.sum(dim=1), torch.ones(20, dtype=torch.float64), rtol=0, atol=1e-8)
        # exact row sum with the spec's 1e-12 in the denominator: 1 - p + p * m / (m + 1e-12)
        p_abn = torch.sigmoid(logits1[:, 0] / tau)
        pi = torch.softmax(logits2 / tau, dim=-1)[:, 1:]
        m = pi.sum(dim=1)
        torch.testing.assert_close(P.sum(dim=1), 1 - p_abn + p_abn * m / (m + 1e-12), rtol=0, atol=1e-14)
        torch.testing.assert_close(P[:, 0], 1 - p_abn, rtol=0, atol=0)
        # abnormal columns are proportional to softmax(logits2 / tau)[1:]
        ratio = P[:, 1:] / pi
        torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-10, atol=0)
        assert torch.equal(P[:, 1:].argmax(dim=1), logits2[:, 1:].argmax(dim=1))


def test_short_video_matches_single_forward(sd_ucf: dict[str, torch.Tensor]) -> None:
    n = 37
    video = make_random_features(n, D, seed=70, dtype=torch.float64)
    anomaly, probs = reference_test_scores(sd_ucf, video, TOKENS, UCF_LIKE)
    assert anomaly.shape == (n,) and probs.shape == (n, 3)
    padded = torch.zeros(1, T, D, dtype=torch.float64)
    padded[0, :n] = video
    out = reference_forward(sd_ucf, padded, [n], TOKENS, UCF_LIKE)
    logits1 = out["logits1"][0, :n, 0]
    torch.testing.assert_close(anomaly, torch.sigmoid(logits1), rtol=0, atol=1e-14)
    tau = UCF_LIKE.test_temperature
    torch.testing.assert_close(probs[:, 0], 1 - torch.sigmoid(logits1 / tau), rtol=0, atol=1e-14)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(n, dtype=torch.float64), rtol=0, atol=1e-11)
    torch.testing.assert_close(probs, refine_scores_hierarchical(logits1, out["logits2"][0, :n], tau))


def test_chunks_are_independent(sd_ucf: dict[str, torch.Tensor]) -> None:
    video = make_random_features(2 * T + 5, D, seed=80, dtype=torch.float64)
    a_full, p_full = reference_test_scores(sd_ucf, video, TOKENS, UCF_LIKE)
    assert a_full.shape == (2 * T + 5,) and p_full.shape == (2 * T + 5, 3)
    torch.testing.assert_close(p_full.sum(dim=1), torch.ones(2 * T + 5, dtype=torch.float64), rtol=0, atol=1e-11)
    torch.testing.assert_close(
        p_full[:, 0], 1 - torch.sigmoid(torch.logit(a_full) / UCF_LIKE.test_temperature), rtol=0, atol=1e-9
    )
    # exactly T rows -> chunks [T rows, all-zero chunk with length T]; the first equals chunk 0 above
    a_t, p_t = reference_test_scores(sd_ucf, video[:T], TOKENS, UCF_LIKE)
    assert a_t.shape == (T,)
    torch.testing.assert_close(a_t, a_full[:T], rtol=0, atol=0)
    torch.testing.assert_close(p_t, p_full[:T], rtol=0, atol=0)
    # the middle chunk alone (again a T-row video) gives the middle rows: positions restart at 0
    a_mid, p_mid = reference_test_scores(sd_ucf, video[T : 2 * T], TOKENS, UCF_LIKE)
    torch.testing.assert_close(a_mid, a_full[T : 2 * T], rtol=0, atol=0)
    torch.testing.assert_close(p_mid, p_full[T : 2 * T], rtol=0, atol=0)
    # the 5-row tail alone (one zero-padded chunk of length 5) gives the last 5 rows
    a_tail, p_tail = reference_test_scores(sd_ucf, video[2 * T :], TOKENS, UCF_LIKE)
    torch.testing.assert_close(a_tail, a_full[2 * T :], rtol=0, atol=0)
    torch.testing.assert_close(p_tail, p_full[2 * T :], rtol=0, atol=0)
    # but a prefix shorter than T is NOT the same as the first rows of the long video (padding, C.8)
    a_short, _ = reference_test_scores(sd_ucf, video[: T - 10], TOKENS, UCF_LIKE)
    assert not torch.allclose(a_short, a_full[: T - 10])


def test_full_visual_length_256_xd_window() -> None:
    """T = 256 with the XD window 64 (4 blocks) and D != text width, one short video."""
    sd = _f64(make_random_official_state_dict(48, 32, 2, 4, 100, 16, 1, 1, 4, 1, 256, 5))
    hp = RefHParams(attn_window=64, text_adapt_until=1, text_mix_weight=0.6, test_temperature=1.0, text_heads=4)
    video = make_random_features(300, 48, seed=90, dtype=torch.float64)
    anomaly, probs = reference_test_scores(sd, video, TOKENS, hp)
    assert anomaly.shape == (300,) and probs.shape == (300, 3)
    assert torch.all((anomaly > 0) & (anomaly < 1))
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(300, dtype=torch.float64), rtol=0, atol=1e-11)
