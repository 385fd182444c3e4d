"""Weights assigned, not copied: the module's parameters are the given tensors, buffers keep their values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model.weights import assign_weights, build_with_weights


class WithBuffers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)
        self.register_buffer("running", torch.zeros(3))  # persistent: in the state dict
        self.register_buffer("mask", torch.arange(3.0), persistent=False)  # computed here, never saved


def weights_of(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: torch.randn_like(v) for k, v in module.state_dict().items()}


def test_parameters_are_the_given_tensors_and_computed_buffers_stay() -> None:
    state = weights_of(WithBuffers())
    model = build_with_weights(WithBuffers, state)
    assert model.linear.weight.data_ptr() == state["linear.weight"].data_ptr(), "assigned, not copied"
    assert isinstance(model.linear.weight, nn.Parameter) and model.linear.weight.requires_grad
    assert model.running.data_ptr() == state["running"].data_ptr()
    torch.testing.assert_close(model.mask, torch.arange(3.0))
    x = torch.randn(2, 4)
    expected = nn.functional.layer_norm(x @ state["linear.weight"].T + state["linear.bias"], (3,),
                                        state["norm.weight"], state["norm.bias"])
    torch.testing.assert_close(model.norm(model.linear(x)), expected)


def test_parameters_are_built_on_meta_and_only_then() -> None:
    seen: dict[str, str] = {}

    def build() -> nn.Module:
        module = WithBuffers()
        seen.update(weight=module.linear.weight.device.type, mask=module.mask.device.type)
        return module

    build_with_weights(build, weights_of(WithBuffers()))
    assert seen == {"weight": "meta", "mask": "cpu"}, "no memory nor initialisation for parameters, real buffers"
    assert nn.Linear(2, 2).weight.device.type == "cpu", "the patch of register_parameter is undone"


def test_other_dtypes_are_converted_to_the_modules() -> None:
    state = {k: v.half() for k, v in weights_of(WithBuffers()).items()}
    model = build_with_weights(WithBuffers, state)
    assert model.linear.weight.dtype == torch.float32
    torch.testing.assert_close(model.linear.weight, state["linear.weight"].float())


def test_missing_or_misshapen_weights_are_refused() -> None:
    state = weights_of(WithBuffers())
    with pytest.raises(RuntimeError, match=r"linear\.bias"):
        build_with_weights(WithBuffers, {k: v for k, v in state.items() if k != "linear.bias"})
    with pytest.raises(RuntimeError, match="size mismatch"):
        build_with_weights(WithBuffers, {**state, "linear.weight": torch.zeros(3, 5)})
    with pytest.raises(RuntimeError, match="meta device"):
        build_with_weights(WithBuffers, {k: v for k, v in state.items() if k != "linear.bias"}, strict=False)
    with pytest.raises(RuntimeError, match="boom"):
        build_with_weights(lambda: (_ for _ in ()).throw(RuntimeError("boom")), state)
    assert nn.Linear(2, 2).weight.device.type == "cpu", "the patch is undone after a failed build"


def test_assign_weights_on_a_built_module() -> None:
    model = WithBuffers()
    state = weights_of(model)
    assign_weights(model, state)
    assert model.norm.bias.data_ptr() == state["norm.bias"].data_ptr()
