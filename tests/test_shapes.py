"""The analytic shape rules must agree with what torch computes, and reject what torch rejects."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from netspec.compiler.function_shapes import function_output
from netspec.compiler.shapes import SkipInit, output_shape

LAYERS = [
    (nn.Conv2d(3, 8, 3), (2, 3, 17, 19)),
    (nn.Conv2d(3, 8, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(2, 1)), (2, 3, 17, 19)),
    (nn.Conv2d(4, 8, 3, padding="same", groups=2), (1, 4, 9, 9)),
    (nn.Conv2d(4, 8, 3, padding="valid"), (1, 4, 9, 9)),
    (nn.Conv1d(3, 5, 4, stride=3), (2, 3, 50)),
    (nn.Conv3d(2, 4, 3, padding=1, stride=2), (1, 2, 7, 8, 9)),
    (nn.MaxPool2d(3, stride=2, padding=1), (2, 4, 15, 16)),
    (nn.MaxPool2d(3, stride=2, ceil_mode=True), (2, 4, 15, 16)),
    (nn.MaxPool2d(2, dilation=2), (1, 1, 11, 12)),
    (nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 4, 14, 14)),
    (nn.AvgPool1d(4), (2, 3, 17)),
    (nn.MaxPool3d(2), (1, 2, 6, 7, 8)),
    (nn.AdaptiveAvgPool2d((1, None)), (2, 3, 7, 9)),
    (nn.AdaptiveMaxPool1d(5), (2, 3, 17)),
    (nn.Flatten(), (2, 3, 4, 5)),
    (nn.Flatten(2, 3), (2, 3, 4, 5)),
    (nn.Linear(5, 7), (2, 3, 5)),
    (nn.BatchNorm2d(4), (2, 4, 5, 5)),
    (nn.BatchNorm1d(4), (2, 4)),
    (nn.GELU(), (2, 3)),
    (nn.Dropout(0.2), (2, 3, 4, 4)),
    (nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1), (2, 3, 5, 6)),
    (nn.ConvTranspose1d(4, 6, 2, stride=3, dilation=2, groups=2), (1, 4, 7)),
    (nn.LayerNorm([3, 5]), (2, 3, 5)),
    (nn.GroupNorm(2, 6), (2, 6, 4, 4)),
    (nn.GroupNorm(3, 3, affine=False), (2, 6, 5)),
    (nn.Softmax(dim=1), (2, 3)),
    (nn.RMSNorm(8), (2, 5, 8)),
    (nn.RMSNorm([5, 8], eps=1e-5), (2, 5, 8)),
]


@pytest.mark.parametrize(("layer", "shape"), LAYERS, ids=[f"{type(m).__name__}-{i}" for i, (m, _) in enumerate(LAYERS)])
def test_rule_matches_torch(layer: nn.Module, shape: tuple[int, ...]) -> None:
    layer.eval()
    expected = tuple(layer(torch.randn(shape)).shape)
    assert output_shape(layer, (torch.empty(shape, device="meta"),)) == expected


@pytest.mark.parametrize(
    ("layer", "shape", "wanted"),
    [
        (nn.Conv2d(3, 8, 5), (1, 3, 3, 3), "too small"),
        (nn.Conv2d(3, 8, 3), (1, 4, 9, 9), "expected input with 3 channels, got 4"),
        (nn.Linear(5, 7), (2, 6), "expected 5 input features, got 6"),
        (nn.BatchNorm2d(4), (2, 4), "expected 4D input"),
        (nn.MaxPool2d(2, padding=2), (1, 1, 8, 8), "pad should be at most half"),
        (nn.RMSNorm(8), (2, 4, 6), r"Given normalized_shape=\[8\], expected input with shape \[\*8\]"),
        (nn.RMSNorm([4, 8]), (8,), r"but got input of size\[8\]"),
    ],
)
def test_rule_rejects_what_torch_rejects(layer: nn.Module, shape: tuple[int, ...], wanted: str) -> None:
    with pytest.raises((RuntimeError, ValueError)):
        layer(torch.randn(shape))
    with pytest.raises(ValueError, match=wanted):
        output_shape(layer, (torch.empty(shape, device="meta"),))


def test_layers_without_a_rule_fall_back_to_running_them() -> None:
    x = torch.empty(2, 3, 4, device="meta")
    assert output_shape(nn.LSTM(4, 5), (x,)) is None
    assert output_shape(nn.Conv2d(3, 3, 3, padding_mode="circular"), (torch.empty(1, 3, 5, 5, device="meta"),)) is None
    assert output_shape(nn.Conv2d(3, 3, 3), (torch.empty(3, 5, 5, device="meta"),)) is None  # unbatched


@pytest.mark.parametrize(
    ("fn", "args", "kwargs"),
    [
        (operator.add, (torch.randn(2, 1, 4), torch.randn(3, 1)), {}),
        (operator.mul, (torch.randn(2, 3), 2.0), {}),
        (torch.cat, ([torch.randn(2, 3), torch.randn(2, 5)],), {"dim": 1}),
        (torch.cat, ([torch.randn(2, 3), torch.randn(4, 3)],), {}),
        (torch.flatten, (torch.randn(2, 3, 4, 5), 1), {}),
        (torch.flatten, (torch.randn(2, 3, 4, 5),), {"start_dim": 1, "end_dim": 2}),
        (F.relu, (torch.randn(2, 3),), {}),
        (F.softmax, (torch.randn(2, 3),), {"dim": -1}),
        (F.scaled_dot_product_attention, (torch.randn(2, 4, 5, 8), torch.randn(2, 4, 7, 8), torch.randn(4, 7, 6)), {}),
        (F.scaled_dot_product_attention, (torch.randn(2, 3, 5, 8),) * 3, {"is_causal": True}),
    ],
)
def test_function_rules_match_torch(fn: object, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    expected = fn(*args, **kwargs)  # type: ignore[operator]

    def meta(v: object) -> object:
        if isinstance(v, torch.Tensor):
            return torch.empty(v.shape, dtype=v.dtype, device="meta")
        if isinstance(v, list):
            return [meta(x) for x in v]
        return v

    out = function_output(fn, tuple(meta(a) for a in args), kwargs)
    assert out is not None and out.shape == expected.shape and out.dtype == expected.dtype


def test_function_rules_reject_mismatched_shapes() -> None:
    a, b = torch.empty(2, 3, device="meta"), torch.empty(2, 4, device="meta")
    with pytest.raises(ValueError, match="cannot be broadcast together"):
        function_output(operator.add, (a, b), {})
    q, k = torch.empty(2, 4, 5, 8, device="meta"), torch.empty(2, 4, 7, 6, device="meta")
    with pytest.raises(ValueError, match="query and key need the same last dim"):
        function_output(F.scaled_dot_product_attention, (q, k, k), {})
    with pytest.raises(ValueError, match="cat needs equal sizes except in dim 1"):
        function_output(torch.cat, ([a, torch.empty(3, 3, device="meta")],), {"dim": 1})


def test_skip_init_leaves_meta_construction_correct() -> None:
    with SkipInit():
        layer = nn.Linear(4, 3, device="meta")
    assert layer.weight.shape == (3, 4) and layer.weight.is_meta
    real = nn.Linear(4, 3)  # outside the mode init runs as usual
    assert real.weight.abs().sum() > 0


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (nn.Flatten(start_dim=5), (2, 3, 4)),
        (nn.Flatten(start_dim=3, end_dim=2), (2, 3, 4, 5)),
        (nn.Softmax(dim=4), (2, 3)),
    ],
)
def test_rules_reject_dims_torch_rejects(layer: nn.Module, shape: tuple[int, ...]) -> None:
    with pytest.raises((IndexError, RuntimeError)):
        layer(torch.randn(shape))
    with pytest.raises(ValueError, match=r"Dimension out of range|start_dim cannot come after end_dim"):
        output_shape(layer, (torch.empty(shape, device="meta"),))


@pytest.mark.parametrize(
    ("fn", "args", "kwargs"),
    [
        (torch.cat, ([torch.empty(2, 3, device="meta")] * 2,), {"dim": 5}),
        (torch.flatten, (torch.empty(2, 3, device="meta"), 5), {}),
        (F.softmax, (torch.empty(2, 3, device="meta"),), {"dim": 7}),
    ],
)
def test_function_rules_reject_dims_out_of_range(
    fn: object, args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    with pytest.raises(ValueError, match="Dimension out of range"):
        function_output(fn, args, kwargs)
