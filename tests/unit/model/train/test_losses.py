"""Spec D: each loss term against a hand computation, StableAdamW against a scalar reference, the LR schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.config import load_preset
from model.network import DSANetOutput
from model.sgnm import SGNMOutput
from model.train.losses import (
    LossSettings,
    background_loss,
    background_target,
    coarse_loss,
    consistency_loss,
    dsanet_loss,
    event_loss,
    mil_align_loss,
    separation_loss,
    topk_counts,
    topk_mean,
)
from model.train.optim import StableAdamW, build_optimisation, split_parameters, warmup_cosine_table

# --- top-k rules -----------------------------------------------------------------------------------------------


def test_topk_counts_are_floor_l_over_16_plus_one() -> None:
    assert topk_counts(torch.tensor([1, 15, 16, 17, 31, 32, 173, 256])).tolist() == [1, 1, 2, 2, 2, 3, 11, 17]


def test_topk_mean_uses_only_valid_rows_and_ranks_channels_independently() -> None:
    values = torch.zeros(2, 40, 2)
    values[0, :20, 0] = torch.arange(20.0)  # L = 20 -> k = 2: (19 + 18) / 2
    values[0, :20, 1] = -torch.arange(20.0)  # top-2 of the second channel: (0 + -1) / 2
    values[0, 20:] = 1000.0  # padding beyond L never counts
    values[1, :, 0] = torch.linspace(0, 1, 40)  # L = 40 -> k = 3: rows 39, 38, 37
    values[1, :, 1] = 5.0
    out = topk_mean(values, torch.tensor([20, 40]))
    top3 = (1.0 + 38 / 39 + 37 / 39) / 3
    torch.testing.assert_close(out, torch.tensor([[18.5, -0.5], [top3, 5.0]]))


# --- L1 / L2 ---------------------------------------------------------------------------------------------------


def test_coarse_loss_by_hand() -> None:
    logits1 = torch.full((2, 32, 1), -20.0)
    logits1[0, :3, 0] = torch.tensor([2.0, 0.0, 1.0])  # L = 17 -> k = 2: sigmoid(2), sigmoid(1)
    logits1[1, 0, 0] = 0.5  # L = 5 -> k = 1: sigmoid(0.5)
    labels = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # anomalous (target 1), normal (target 0)
    s0 = (1 / (1 + math.exp(-2)) + 1 / (1 + math.exp(-1))) / 2
    s1 = 1 / (1 + math.exp(-0.5))
    expected = -(math.log(s0) + math.log(1 - s1)) / 2
    assert coarse_loss(logits1, torch.tensor([17, 5]), labels).item() == pytest.approx(expected, rel=1e-6)


def test_mil_align_loss_by_hand_with_multi_hot_labels() -> None:
    logits2 = torch.zeros(1, 16, 3)
    logits2[0, 0] = torch.tensor([1.0, 0.0, 0.0])
    logits2[0, 5] = torch.tensor([0.0, 2.0, 0.0])
    logits2[0, 9] = torch.tensor([0.0, 0.0, 3.0])  # L = 10 -> k = 1: per-class maxima [1, 2, 3]
    logits2[0, 12] = 50.0  # beyond L
    labels = torch.tensor([[0.0, 1.0, 1.0]])  # q = [0, 1/2, 1/2]
    log_z = math.log(math.e + math.e**2 + math.e**3)
    expected = -(0.5 * (2 - log_z) + 0.5 * (3 - log_z))
    assert mil_align_loss(logits2, torch.tensor([10]), labels).item() == pytest.approx(expected, rel=1e-6)


# --- L3 / L4 / L5 ----------------------------------------------------------------------------------------------


def test_separation_loss_by_hand() -> None:
    text = torch.tensor([[2.0, 0.0, 0.0], [0.6, -0.8, 0.0], [0.0, 0.0, 5.0]])  # normalised: |t0.t1| = 0.6, 0
    assert separation_loss(text).item() == pytest.approx((0.6 + 0.0) / 2)


def test_event_loss_uses_label_smoothing_on_the_normalised_target() -> None:
    logits3 = torch.tensor([[[0.0, 1.0, 2.0]]])
    labels = torch.tensor([[0.0, 1.0, 1.0]])
    target = [0.9 * q + 0.1 / 3 for q in (0.0, 0.5, 0.5)]
    log_z = math.log(1 + math.e + math.e**2)
    expected = -sum(t * (z - log_z) for t, z in zip(target, (0.0, 1.0, 2.0), strict=True))
    assert event_loss(logits3, labels, 0.1).item() == pytest.approx(expected, rel=1e-6)


def test_background_target_and_loss_by_hand() -> None:
    torch.testing.assert_close(background_target(3, 0.01), torch.tensor([1.0, 0.01, 0.01]) / 1.02)
    logits4 = torch.tensor([[[1.0, 0.0, -1.0]], [[1.0, 0.0, -1.0]]])
    g = [1 / 1.02, 0.01 / 1.02, 0.01 / 1.02]
    target = [0.9 * x + 0.1 / 3 for x in g]
    log_z = math.log(math.e + 1 + math.exp(-1))
    expected = -sum(t * (z - log_z) for t, z in zip(target, (1.0, 0.0, -1.0), strict=True))
    assert background_loss(logits4, 0.1, 0.01).item() == pytest.approx(expected, rel=1e-6)


# --- L6 and the total ------------------------------------------------------------------------------------------


def test_consistency_loss_pools_the_valid_positions() -> None:
    v = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [5.0, 5.0], [1.0, 0.0]]])
    z = torch.tensor([[[1.0, 0.0], [0.0, -1.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]])
    logits1 = torch.zeros(2, 3, 1)  # sigma = 0.5 everywhere
    # valid: (0,0) r = 0; (0,1) r = 1; (1,0) r = 0.5 -> errors 0.25, 0.25, 0
    assert consistency_loss(logits1, v, z, torch.tensor([2, 1])).item() == pytest.approx(0.5 / 3)


def _outputs(batch: int = 2, steps: int = 32, classes: int = 3, width: int = 4) -> DSANetOutput:
    gen = torch.Generator().manual_seed(0)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, requires_grad=True)

    sgnm = SGNMOutput(reconstructed=r(batch, steps, width), prototypes=r(batch, 2, width), g_loss=r(()))
    return DSANetOutput(r(classes, width), r(batch, steps, 1), r(batch, steps, classes), r(batch, 1, classes),
                        r(batch, 1, classes), r(batch, steps, width), sgnm)


def test_total_is_l1_plus_weighted_l2_plus_the_rest() -> None:
    out, lengths, labels = _outputs(), torch.tensor([32, 20]), torch.tensor([[1.0, 0, 0], [0, 1.0, 1.0]])
    terms = dsanet_loss(out, lengths, labels, LossSettings(mil_align_weight=5.0))
    expected = (terms.l1_coarse + 5.0 * terms.l2_mil_align + terms.l3_separation + terms.l4_event
                + terms.l5_background + terms.l6_consistency + terms.l7_compactness)
    torch.testing.assert_close(terms.total, expected)
    assert terms.l7_compactness is out.sgnm.g_loss or torch.equal(terms.l7_compactness, out.sgnm.g_loss)
    terms.total.backward()
    assert out.logits1.grad is not None and out.visual.grad is not None and out.sgnm.reconstructed.grad is not None
    without = dsanet_loss(out._replace(sgnm=None), lengths, labels, LossSettings(mil_align_weight=5.0, with_sgnm=False))
    torch.testing.assert_close(without.total, sum(without[:5]))
    with pytest.raises(ValueError, match="with_sgnm"):
        dsanet_loss(out._replace(sgnm=None), lengths, labels, LossSettings())


# --- StableAdamW -----------------------------------------------------------------------------------------------


def _reference_stable_adamw(p0: list[float], grads: list[list[float]], lr: float, wd: float, eps: float,
                            b1: float = 0.9, b2: float = 0.999) -> tuple[list[float], list[float]]:
    """Spec D written out per element with plain floats; returns the parameters and the clipping factors."""
    p, m, v, vmax, scales = list(p0), [0.0] * len(p0), [0.0] * len(p0), [0.0] * len(p0), []
    for t, g in enumerate(grads, start=1):
        p = [x * (1 - lr * wd) for x in p]
        m = [b1 * a + (1 - b1) * b for a, b in zip(m, g, strict=True)]
        v = [b2 * a + (1 - b2) * b * b for a, b in zip(v, g, strict=True)]
        vmax = [max(a, b) for a, b in zip(vmax, v, strict=True)]
        denom = [math.sqrt(a) / math.sqrt(1 - b2**t) + eps for a in vmax]
        rms = math.sqrt(sum((gi / d) ** 2 for gi, d in zip(g, denom, strict=True)) / len(g))
        scale = max(1.0, rms)
        scales.append(scale)
        p = [x - lr / (1 - b1**t) / scale * mi / d for x, mi, d in zip(p, m, denom, strict=True)]
    return p, scales


def test_stable_adamw_matches_the_spec_formula() -> None:
    grads = [[0.01, -0.02, 0.03], [10.0, 5.0, -8.0], [0.5, -0.1, 0.2], [-3.0, 0.0, 1.0]]
    expected, scales = _reference_stable_adamw([0.5, -1.0, 2.0], grads, lr=0.1, wd=0.01, eps=1e-10)
    assert max(scales) > 1.0  # the update clipping is exercised
    param = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64))
    optimiser = StableAdamW([param], lr=0.1, weight_decay=0.01)
    for g in grads:
        param.grad = torch.tensor(g, dtype=torch.float64)
        optimiser.step()
    np.testing.assert_allclose(param.detach().numpy(), expected, rtol=1e-12)


def test_stable_adamw_at_lr_zero_only_updates_its_moments() -> None:
    param = torch.nn.Parameter(torch.ones(3))
    optimiser = StableAdamW([param], lr=0.0)
    param.grad = torch.ones(3)
    optimiser.step()
    assert torch.equal(param.detach(), torch.ones(3)) and optimiser.state[param]["step"] == 1


# --- schedules -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("total", "lr"), [(10 * (125 + 126), 7e-5), (10 * 412, 1e-5)])
def test_warmup_cosine_table_at_the_spec_iterations(total: int, lr: float) -> None:
    table = warmup_cosine_table(lr, total)
    assert len(table) == total and table[0] == 0.0
    assert table[50] == pytest.approx(lr * 50 / 99) and table[99] == pytest.approx(lr)
    assert table[100] == pytest.approx(lr)  # j = 0: 0.1 lr + 0.9 lr
    half = 100 + (total - 100) // 2
    assert table[half] == pytest.approx(0.1 * lr + 0.45 * lr * (1 + math.cos(math.pi * (half - 100) / (total - 100))))
    assert table[-1] == pytest.approx(0.1 * lr, rel=1e-4)
    assert np.all(np.diff(table[100:]) <= 0)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_optimisation_groups_and_schedules() -> None:
    from model.factory import create_model
    from tests.conftest import tiny_config

    cfg = tiny_config("ucf", width=16)
    model = create_model(cfg, with_text_tower=True)
    main, sgnm = split_parameters(model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].startswith("video_anomaly_refiner.") for p in sgnm)
    assert not any(names[id(p)].startswith(("video_anomaly_refiner.", "clip_adapter.tower.")) for p in main)
    assert any(names[id(p)].startswith("clip_adapter.text_adapter.") for p in main)
    opt = build_optimisation(model, cfg.training, schedule_iterations_per_epoch=251)
    assert opt.main.defaults["weight_decay"] == 0.01 and opt.sgnm.defaults["weight_decay"] == 1e-4
    table = warmup_cosine_table(cfg.training.lr, 10 * 251)
    lr = cfg.training.lr
    for iteration in range(130):
        assert opt.learning_rates()["lr_sgnm"] == pytest.approx(table[iteration], abs=1e-15)
        opt.sgnm_schedule.step()
    for epoch in range(11):
        expected = lr * (1 + math.cos(math.pi * epoch / 10)) / 2
        assert opt.learning_rates()["lr_main"] == pytest.approx(expected, abs=1e-12)
        opt.end_epoch()


def test_presets_carry_the_official_schedule_constants() -> None:
    ucf, xd = load_preset("ucf").training, load_preset("xd").training
    assert (ucf.lr, ucf.loss2_weight, ucf.batch_layout, ucf.eval_every, ucf.select_metric) == (
        7e-5, 1.1, "paired", 10, "auc")
    assert (xd.lr, xd.loss2_weight, xd.batch_layout, xd.eval_every, xd.select_metric) == (1e-5, 5.0, "mixed", 0, "ap")
    for t in (ucf, xd):
        assert (t.sgnm_warmup_iterations, t.sgnm_final_lr_ratio, t.sgnm_weight_decay, t.weight_decay) == (
            100, 0.1, 1e-4, 0.01)
        assert (t.label_smoothing, t.background_mass, t.reset_to_best, t.seed, t.max_epoch) == (
            0.1, 0.01, True, 234, 10)
