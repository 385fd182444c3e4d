"""Optimisation of DSANet (spec D): AdamW + per-epoch cosine for the main group, StableAdamW + warm-up/cosine
table for the SGNM group.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler

from model.config import TrainingConfig

SGNM_PREFIX = "video_anomaly_refiner."


class StableAdamW(torch.optim.Optimizer):
    """AdamW with update clipping, exactly as spec D.

    Per parameter and step ``t``: ``p ← p·(1 − lr·wd)`` first (decoupled decay), then the moments
    ``m ← β₁m + (1−β₁)g``, ``v ← β₂v + (1−β₂)g²``, ``v̂ = max(v̂, v)`` (AMSGrad), the denominator
    ``d = sqrt(v̂)/sqrt(1 − β₂ᵗ) + eps``, the clipping factor ``s = max(1, RMS(g / d) / clip_threshold)``
    (RMS over the tensor), and the step ``p ← p − lr / (1 − β₁ᵗ) / s · m / d``.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-10,
        weight_decay: float = 1e-4,
        amsgrad: bool = True,
        clip_threshold: float = 1.0,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad,
                    "clip_threshold": clip_threshold}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                self._update(p, p.grad, state, group, beta1, beta2)
        return loss

    @staticmethod
    def _update(p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], beta1: float,
                beta2: float) -> None:
        t, lr = state["step"], group["lr"]
        p.mul_(1.0 - lr * group["weight_decay"])
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        second = exp_avg_sq
        if group["amsgrad"]:
            torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            second = state["max_exp_avg_sq"]
        denom = second.sqrt() / math.sqrt(1.0 - beta2**t) + group["eps"]
        rms = float((grad / denom).pow(2).mean().sqrt())
        scale = max(1.0, rms / group["clip_threshold"])
        p.addcdiv_(exp_avg, denom, value=-lr / (1.0 - beta1**t) / scale)


def warmup_cosine_table(base_lr: float, total: int, warmup: int = 100, final_ratio: float = 0.1) -> np.ndarray:
    """Learning rate of every iteration: a linear warm-up then a cosine to ``final_ratio·base_lr``.

    Iterations ``0 … warmup−1`` are ``linspace(0, base_lr, warmup)`` (0 at iteration 0, ``base_lr`` at
    ``warmup − 1``); iteration ``warmup + j`` is ``f + (base_lr − f)/2·(1 + cos(π j / (total − warmup)))``
    with ``f = final_ratio·base_lr``.
    """
    warmup = min(warmup, total)
    final = final_ratio * base_lr
    ramp = np.linspace(0.0, base_lr, warmup)
    j = np.arange(total - warmup)
    cosine = final + 0.5 * (base_lr - final) * (1.0 + np.cos(np.pi * j / max(total - warmup, 1)))
    return np.concatenate([ramp, cosine])


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Trainable parameters: (main group, SGNM group) by name; frozen ones (CLIP) are left out."""
    main: list[nn.Parameter] = []
    sgnm: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (sgnm if name.startswith(SGNM_PREFIX) else main).append(param)
    return main, sgnm


class _TableLR:
    """Learning-rate multiplier of each iteration for :class:`LambdaLR` (the last entry beyond the table)."""

    def __init__(self, table: np.ndarray, base_lr: float) -> None:
        self.factors = (table / base_lr).tolist() if base_lr else [0.0] * len(table)

    def __call__(self, iteration: int) -> float:
        return self.factors[min(iteration, len(self.factors) - 1)]


@dataclass
class Optimisation:
    """The two optimisers and their schedules; one :meth:`step` per iteration, one :meth:`end_epoch` per epoch."""

    main: torch.optim.AdamW
    sgnm: StableAdamW
    main_schedule: LRScheduler
    sgnm_schedule: LambdaLR

    def zero_grad(self) -> None:
        self.main.zero_grad(set_to_none=True)
        self.sgnm.zero_grad(set_to_none=True)

    def step(self, scaler: torch.amp.GradScaler | None = None) -> None:
        """Step main, step SGNM, step the SGNM schedule (the official order)."""
        if scaler is None:
            self.main.step()
            self.sgnm.step()
        else:
            scaler.step(self.main)
            scaler.step(self.sgnm)
            scaler.update()
        self.sgnm_schedule.step()

    def end_epoch(self) -> None:
        self.main_schedule.step()

    def learning_rates(self) -> dict[str, float]:
        return {"lr_main": self.main.param_groups[0]["lr"], "lr_sgnm": self.sgnm.param_groups[0]["lr"]}

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).state_dict() for name in ("main", "sgnm", "main_schedule", "sgnm_schedule")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("main", "sgnm", "main_schedule", "sgnm_schedule"):
            getattr(self, name).load_state_dict(state[name])


def build_optimisation(model: nn.Module, cfg: TrainingConfig, schedule_iterations_per_epoch: int) -> Optimisation:
    """Spec D: AdamW(lr, wd 0.01) with ``CosineAnnealingLR(T_max = max_epoch)`` stepped per epoch, and
    StableAdamW(wd 1e-4, eps 1e-10, AMSGrad) on SGNM with a warm-up + cosine table over
    ``max_epoch × schedule_iterations_per_epoch`` iterations, stepped per iteration.
    """
    main_params, sgnm_params = split_parameters(model)
    main = torch.optim.AdamW(main_params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sgnm = StableAdamW(sgnm_params, lr=cfg.lr, weight_decay=cfg.sgnm_weight_decay)
    table = warmup_cosine_table(cfg.lr, cfg.max_epoch * schedule_iterations_per_epoch, cfg.sgnm_warmup_iterations,
                                cfg.sgnm_final_lr_ratio)
    main_schedule = CosineAnnealingLR(main, T_max=cfg.max_epoch)
    return Optimisation(main, sgnm, main_schedule, LambdaLR(sgnm, _TableLR(table, cfg.lr)))
