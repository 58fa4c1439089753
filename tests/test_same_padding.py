"""TensorFlow "SAME" padding: netspec's Conv2dSame / MaxPool2dSame / AvgPool2dSame layers and the pad_same
statement function, held to timm's own classes (bit for bit), built from specs, and emitted from timm modules."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from zoo import import_torchvision, round_trip

import netspec
from netspec.catalog.same_padding import AvgPool2dSame, Conv2dSame, MaxPool2dSame, pad_same
from netspec.emitter.equivalents import has_equivalent

import_torchvision()  # timm imports torchvision; the stand-in keeps its C ops out (see tests/zoo.py)
timm_layers = pytest.importorskip("timm.layers")
timm_pool = pytest.importorskip("timm.layers.pool2d_same")
timm_padding = pytest.importorskip("timm.layers.padding")

SIZES = [(7, 7), (8, 9), (5, 12)]
WINDOWS = list(itertools.product([1, 2, 3, 5], [1, 2, 3]))  # (kernel, stride)


def _x(h: int, w: int, channels: int = 4) -> torch.Tensor:
    return torch.randn(2, channels, h, w, generator=torch.Generator().manual_seed(h * 100 + w))


def test_conv2d_same_equals_timm_bit_for_bit() -> None:
    for (h, w), (k, s), d in itertools.product(SIZES, WINDOWS, [1, 2]):
        theirs = timm_layers.Conv2dSame(4, 6, k, stride=s, dilation=d, groups=2)
        ours = Conv2dSame(4, 6, k, stride=s, dilation=d, groups=2)
        ours.load_state_dict(theirs.state_dict(), strict=True)
        x = _x(h, w)
        out = ours(x)
        assert torch.equal(out, theirs(x)), (h, w, k, s, d)
        assert out.shape[-2:] == (math.ceil(h / s), math.ceil(w / s))


def test_pools_same_equal_timm_bit_for_bit() -> None:
    for (h, w), (k, s) in itertools.product(SIZES, WINDOWS):
        x = _x(h, w) - 10.0  # all negative: a zero-padded max would show
        for d in (1, 2):
            theirs = timm_pool.MaxPool2dSame(k, stride=s, dilation=d)
            assert torch.equal(MaxPool2dSame(k, stride=s, dilation=d)(x), theirs(x)), ("max", h, w, k, s, d)
        for include in (True, False):
            theirs = timm_pool.AvgPool2dSame(k, stride=s, count_include_pad=include)
            assert torch.equal(AvgPool2dSame(k, stride=s, count_include_pad=include)(x), theirs(x)), ("avg", k, s)


def test_pad_same_equals_timm_and_pads_the_odd_one_at_the_end() -> None:
    x = _x(7, 8)
    for (k, s), d in itertools.product(WINDOWS, [1, 2]):
        assert torch.equal(pad_same(x, [k, k], [s, s], [d, d]), timm_padding.pad_same(x, [k, k], [s, s], [d, d]))
    padded = pad_same(torch.ones(1, 1, 4, 4), [2, 2], [1, 1], value=-1.0)  # 1 in all: none before, 1 after
    assert padded.shape == (1, 1, 5, 5) and padded[0, 0, 0, 0] == 1 and padded[0, 0, -1, -1] == -1
    with pytest.raises(ValueError, match="must be positive"):
        pad_same(x, [3, 3], [0, 1])


SPEC = """
netspec: 1
input: {shape: [3, 17, 23]}
model:
  type: Sequential
  layers:
    - {type: Conv2dSame, in_channels: 3, out_channels: 8, kernel_size: 3, stride: 2}
    - {type: MaxPool2dSame, kernel_size: 3, stride: 2}
    - {type: AvgPool2dSame, kernel_size: [2, 3], stride: [1, 2]}
    - {type: Conv2dSame, in_channels: 8, out_channels: 4, kernel_size: [1, 5], dilation: 2, bias: false}
"""


def test_spec_layers_build_and_compute_what_timm_computes(write_spec: Callable[..., Path]) -> None:
    built = netspec.build(write_spec(SPEC))
    reference = nn.Sequential(
        timm_layers.Conv2dSame(3, 8, 3, stride=2),
        timm_pool.MaxPool2dSame(3, stride=2),
        timm_pool.AvgPool2dSame((2, 3), stride=(1, 2)),
        timm_layers.Conv2dSame(8, 4, (1, 5), dilation=2, bias=False),
    )
    assert list(built.model.state_dict()) == list(reference.state_dict())
    built.model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 17, 23)
    out = built.model(x)
    assert torch.equal(out, reference(x))
    assert out.shape == (2, 4, 5, 3)  # 17 -> 9 -> 5 -> 5; 23 -> 12 -> 6 -> 3


def test_spec_arguments_are_checked_at_validation(write_spec: Callable[..., Path]) -> None:
    bad = SPEC.replace(
        "kernel_size: 3, stride: 2}\n    - {type: MaxPool2dSame",
        "kernel_size: 3, stride: 0}\n    - {type: MaxPool2dSame",
    )
    with pytest.raises(netspec.SpecError) as err:
        netspec.build(write_spec(bad))
    text = str(err.value)
    assert "model.layers.0.stride" in text and "stride must be positive, got 0" in text and "spec.yaml:7:75:" in text
    with pytest.raises(netspec.SpecError, match="Conv2dSame has no argument 'padding'"):
        netspec.build(
            write_spec(
                SPEC.replace(
                    "kernel_size: 3, stride: 2}\n    - {type: MaxPool2dSame",
                    "kernel_size: 3, padding: 1}\n    - {type: MaxPool2dSame",
                )
            )
        )


def test_statement_pad_same_in_a_graph(write_spec: Callable[..., Path]) -> None:
    spec = """
netspec: 1
input: {shape: [2, 6, 7]}
model:
  type: Graph
  inputs: [x]
  forward:
    - h = pad_same(x, [3, 3], [2, 2], value=-1.0)
  outputs: h
"""
    x = torch.randn(1, 2, 6, 7)
    model = netspec.build(write_spec(spec)).model
    assert torch.equal(model(x), timm_padding.pad_same(x, [3, 3], [2, 2], value=-1.0))


def test_negative_zero_padding_crops_as_torch_does(write_spec: Callable[..., Path]) -> None:
    """NASNet's ZeroPad2d((-1, 1, -1, 1)): shift by one pixel (crop the first row and column, pad the last)."""
    spec = "netspec: 1\ninput: {shape: [2, 5, 5]}\nmodel: {type: ZeroPad2d, padding: [-1, 1, -1, 1]}\n"
    x = torch.randn(1, 2, 5, 5)
    assert torch.equal(netspec.build(write_spec(spec)).model(x), nn.ZeroPad2d((-1, 1, -1, 1))(x))
    with pytest.raises(netspec.SpecError, match="padding must not be negative"):
        netspec.build(write_spec("netspec: 1\nmodel: {type: ReflectionPad2d, padding: [-1, 1, -1, 1]}\n"))


class _Stem(nn.Module):
    """timm's TF ports: a SAME conv, a SAME max pool, a SAME avg pool, weight-standardised SAME conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = timm_layers.Conv2dSame(3, 8, 3, stride=2, bias=False)
        self.pool = timm_pool.MaxPool2dSame(3, stride=2)
        self.avg = timm_pool.AvgPool2dSame(3, stride=2, count_include_pad=False)
        self.std = timm_layers.StdConv2dSame(8, 4, 3, stride=2)  # forward calls timm's pad_same

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.std(self.avg(self.pool(self.conv(x))) + 1.0)


def test_emit_writes_timm_same_layers_as_netspec_layers_and_round_trips() -> None:
    spec = netspec.emit(_Stem().eval(), input_shape=[3, 21, 19])
    text = spec.to_yaml()
    assert "type: Conv2dSame" in text and "type: MaxPool2dSame" in text and "type: AvgPool2dSame" in text
    assert "count_include_pad: false" in text and "pad_same(" in text  # StdConv2dSame is traced: pad_same, conv2d
    outcome = round_trip("stem", lambda: _Stem(), (3, 21, 19))
    assert outcome.status == "exact", outcome


class _DoubledConv(timm_layers.Conv2dSame):
    """A subclass with its own forward computes something else: it must not become a Conv2dSame layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(x)) * 2


def test_a_subclass_with_its_own_forward_is_not_mapped() -> None:
    outcome = round_trip("doubled", lambda: nn.Sequential(_DoubledConv(3, 4, 3, stride=2)), (3, 9, 9))
    assert outcome.status in ("exact", "refused"), outcome
    if outcome.status == "exact":
        assert "Conv2dSame" not in netspec.emit(nn.Sequential(_DoubledConv(3, 4, 3, stride=2))).to_yaml()
    else:
        assert outcome.detail.startswith("0 (_DoubledConv):"), outcome
    conv = timm_layers.Conv2dSame(3, 4, 3)
    assert has_equivalent(conv)
    conv.forward = lambda x: x  # type: ignore[method-assign]  # replaced on the instance: not timm's computation
    assert not has_equivalent(conv)


def test_layers_compile_under_script_and_export() -> None:
    """The padding is computed from the input's size inside forward, which TorchScript and torch.export follow."""
    x = _x(9, 7)
    for layer in (Conv2dSame(4, 4, 3, stride=2), MaxPool2dSame(3, stride=2), AvgPool2dSame(2, stride=2)):
        want = layer(x)
        assert torch.equal(torch.jit.script(layer)(x), want), type(layer).__name__
        assert torch.equal(torch.export.export(layer, (x,)).module()(x), want), type(layer).__name__
        assert layer(_x(12, 5)).shape[-2:] == (6, 3)  # the same module at another size: padding recomputed
