"""Shape rules apply only to the classes whose forward they describe; a rule's own failure is netspec's bug.

A subclass that overrides ``forward`` (timm's ``Conv2dSame``, written here as timm writes it) must
be run on meta instead of getting its parent's formula; lazy modules get their sizes from the input
and then build with the same weights hand-written PyTorch gives them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import netspec
from netspec.compiler import shapes


class Conv2dSame(nn.Conv2d):
    """timm.layers.conv2d_same.Conv2dSame: TensorFlow-style 'SAME' padding computed in forward."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class PlainConvSubclass(nn.Conv2d):
    """No forward of its own: the Conv2d formula still describes it."""


@pytest.fixture
def registered(clean_registry: None) -> Iterator[None]:
    netspec.register(Conv2dSame, name="TimmStyleConv2dSame")  # netspec has its own Conv2dSame
    netspec.register(PlainConvSubclass)
    yield


def conv_spec(kind: str) -> dict[str, object]:
    return {
        "netspec": 1,
        "input": {"shape": [3, 15, 15]},
        "model": {
            "type": "Sequential",
            "layers": [
                {"type": kind, "in_channels": 3, "out_channels": 8, "kernel_size": 3, "stride": 2},
                "Flatten",
                {"type": "Linear", "out_features": 10},
            ],
        },
    }


def test_a_subclass_with_its_own_forward_is_run_not_given_its_parents_formula(registered: None) -> None:
    built = netspec.build(conv_spec("TimmStyleConv2dSame"))
    x = torch.randn(2, 3, 15, 15)
    reference = Conv2dSame(3, 8, 3, 2)(x)
    assert tuple(reference.shape) == (2, 8, 8, 8)  # SAME padding: ceil(15 / 2); Conv2d's formula says 7
    assert built.spec.inferred.shapes["0"] == (2, 8, 8, 8)
    # in_features was inferred from the real size, so the first forward works.
    assert built.model[2].in_features == 8 * 8 * 8
    assert built.model(x).shape == (2, 10)


def test_a_subclass_without_its_own_forward_keeps_the_formula(registered: None) -> None:
    built = netspec.build(conv_spec("PlainConvSubclass"))
    assert built.spec.inferred.shapes["0"] == (2, 8, 7, 7)
    assert built.model(torch.randn(2, 3, 15, 15)).shape == (2, 10)


def test_an_exception_inside_a_rule_is_an_internal_error_not_the_users(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(module: nn.Module, x: tuple[int, ...]) -> tuple[int, ...]:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setitem(shapes._RULES, nn.Linear, broken)
    spec = {"netspec": 1, "input": {"shape": [4]}, "model": {"type": "Linear", "out_features": 2}}
    with pytest.raises(shapes.ShapeRuleBug, match=r"netspec.s shape rule for Linear failed.*ZeroDivisionError"):
        netspec.read(spec)


def test_a_rule_rejecting_the_input_is_still_the_users_problem() -> None:
    spec = {"netspec": 1, "input": {"shape": [4]}, "model": {"type": "Linear", "in_features": 5, "out_features": 2}}
    with pytest.raises(netspec.SpecError, match="expects 5 input features"):
        netspec.read(spec)


def test_lazy_layers_take_their_sizes_from_the_input_and_build_seeded() -> None:
    spec = {
        "netspec": 1,
        "seed": 3,
        "input": {"shape": [2, 9, 9]},
        "model": {
            "type": "Sequential",
            "layers": [
                {"type": "LazyConv2d", "out_channels": 4, "kernel_size": 3},
                {"type": "LazyBatchNorm2d"},
                "Flatten",
                {"type": "LazyLinear", "out_features": 5},
            ],
        },
    }
    built = netspec.build(spec)
    assert built.spec.inferred.shapes["0"] == (2, 4, 7, 7)
    torch.manual_seed(3)
    reference = nn.Sequential(nn.LazyConv2d(4, 3), nn.LazyBatchNorm2d(), nn.Flatten(), nn.LazyLinear(5))
    reference.eval()
    reference(torch.zeros(2, 2, 9, 9))  # hand-written lazy modules materialise at the first forward
    mine, theirs = built.model.state_dict(), reference.state_dict()
    assert list(mine) == list(theirs)
    for name in theirs:  # the seed gives the weights hand-written PyTorch gets
        assert torch.equal(mine[name], theirs[name]), name
    # Real parameters from the start: the optimizer and the memory check see them.
    assert not any(isinstance(p, nn.UninitializedParameter) for p in built.model.parameters())
    x = torch.randn(2, 2, 9, 9)
    built.model.eval()
    assert torch.equal(built.model(x), reference(x))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_embedding_rule_equals_torch_on_integer_indices(dtype: torch.dtype) -> None:
    layer = nn.Embedding(10, 6, device="meta", dtype=torch.float64)
    x = torch.zeros(2, 3, 4, dtype=dtype, device="meta")
    out = shapes.layer_output(layer, (x,))
    assert out is not None
    real = nn.Embedding(10, 6, dtype=torch.float64)(torch.zeros(2, 3, 4, dtype=dtype))
    assert (out.shape, out.dtype, out.device.type) == (real.shape, real.dtype, "meta")


def test_embedding_on_float_indices_is_left_to_torch_and_reported() -> None:
    assert shapes.embedding_output(nn.Embedding(10, 6), (torch.zeros(2, 3),)) is None
    spec = {
        "netspec": 1,
        "input": {"shape": [3]},
        "model": {"type": "Embedding", "num_embeddings": 10, "embedding_dim": 6},
    }
    message = r"Embedding takes integer indices \(int64 or int32\), got a float32 tensor \(input \[B, 3\]"
    with pytest.raises(netspec.SpecError, match=message):
        netspec.read(spec)
