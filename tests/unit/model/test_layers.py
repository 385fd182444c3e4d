"""Visual-branch building blocks against expectations computed independently of the code."""

from __future__ import annotations

import math

import pytest
import torch

from model.layers import (
    GraphConvolution,
    TemporalTransformer,
    block_diagonal_mask,
    distance_adjacency,
    similarity_adjacency,
)


@pytest.mark.parametrize("window", [8, 64])
def test_attention_mask_is_block_diagonal(window: int) -> None:
    mask = block_diagonal_mask(256, window)
    assert mask.shape == (256, 256)
    for i, j in [(0, 0), (0, window - 1), (window - 1, 0), (window, 2 * window - 1), (255, 256 - window)]:
        assert mask[i, j] == 0, (i, j)
    for i, j in [(0, window), (window, window - 1), (255, 0), (0, 255)]:
        assert mask[i, j] == float("-inf"), (i, j)
    assert int((mask == 0).sum()) == 256 * window  # 256/window blocks of window² entries
    assert set(mask.unique().tolist()) == {0.0, float("-inf")}


def test_windowed_attention_keeps_information_inside_the_window() -> None:
    torch.manual_seed(0)
    transformer = TemporalTransformer(width=16, layers=2, heads=1, length=32, window=8, mlp_ratio=4).eval()
    x = torch.randn(1, 32, 16)
    changed = x.clone()
    changed[0, 10] = torch.randn(16)  # window 1 covers rows 8..15
    with torch.no_grad():
        diff = (transformer(x) - transformer(changed)).abs().amax(dim=-1)[0]
    assert diff[8:16].min() > 1e-4
    assert diff[:8].max() == 0 and diff[16:].max() == 0


def test_similarity_adjacency_thresholds_to_zero_and_softmaxes_the_valid_block() -> None:
    # Rows 0,1 are nearly parallel (cos 0.8 > 0.7), row 2 orthogonal; row 3 is padding (L = 3).
    x = torch.tensor([[[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [1.0, 1.0]]])
    adj = similarity_adjacency(x, torch.tensor([3]), threshold=0.7)
    e = math.e
    # Row 0: cosines [1, 0.8, 0] → thresholded [1, 0.8, 0] → softmax over three entries.
    row0 = torch.tensor([e**1, e**0.8, e**0]) / (e**1 + e**0.8 + 1)
    # Row 2: cosines [0, 0.6, 1] → [0, 0, 1]: below-threshold entries become 0, not −inf.
    row2 = torch.tensor([1, 1, e]) / (2 + e)
    torch.testing.assert_close(adj[0, 0, :3], row0)
    torch.testing.assert_close(adj[0, 2, :3], row2)
    assert adj[0, :, 3].abs().max() == 0 and adj[0, 3].abs().max() == 0
    torch.testing.assert_close(adj[0, :3].sum(-1), torch.ones(3))


def test_similarity_adjacency_is_per_sequence() -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 16, 8)
    both = similarity_adjacency(x, torch.tensor([16, 5]), 0.7)
    alone = similarity_adjacency(x[1:], torch.tensor([5]), 0.7)
    torch.testing.assert_close(both[1], alone[0])
    assert both[1, 5:].abs().max() == 0 and both[1, :, 5:].abs().max() == 0


def test_distance_adjacency_values() -> None:
    adj = distance_adjacency(256)
    assert adj.shape == (256, 256)
    assert adj[0, 0] == 1.0 and adj[100, 100] == 1.0
    assert adj[3, 4].item() == pytest.approx(math.exp(-1 / math.e), rel=1e-6)
    assert adj[0, 255].item() == pytest.approx(math.exp(-255 / math.e), rel=1e-5, abs=1e-38)
    torch.testing.assert_close(adj, adj.T)
    assert adj[0].sum() > 1.0  # not row-normalised


def test_graph_convolution_residuals() -> None:
    torch.manual_seed(2)
    down, same = GraphConvolution(8, 4), GraphConvolution(4, 4)
    assert down.residual is not None and down.residual.kernel_size == (5,) and same.residual is None
    h = torch.randn(2, 10, 4)
    adj = torch.rand(10, 10)
    torch.testing.assert_close(same(h, adj), adj @ (h @ same.weight) + h)
    h8 = torch.randn(1, 10, 8)
    conv = torch.nn.functional.conv1d(h8.transpose(1, 2), down.residual.weight, down.residual.bias, padding=2)
    torch.testing.assert_close(down(h8, adj), adj @ (h8 @ down.weight) + conv.transpose(1, 2))
