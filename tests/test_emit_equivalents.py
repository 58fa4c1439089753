"""Other libraries' layers that netspec computes identically: torchvision's StochasticDepth and timm's
DropPath emit as netspec's StochasticDepth, with the same random draws in training mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from zoo import import_torchvision

import netspec

import_torchvision()  # timm imports torchvision; the stand-in keeps its C ops out (see tests/zoo.py)
timm_layers = pytest.importorskip("timm.layers")


class Residual(nn.Module):
    def __init__(self, drop: nn.Module) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.fc(x))


def same_in_both_modes(model: nn.Module) -> nn.Module:
    spec = netspec.emit(model)
    rebuilt = netspec.build(spec).model
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(16, 8)
    for train in (False, True):
        model.train(train)
        rebuilt.train(train)
        torch.manual_seed(5)
        want = model(x)
        torch.manual_seed(5)
        torch.testing.assert_close(rebuilt(x), want)
    return rebuilt


def test_timm_drop_path_becomes_stochastic_depth() -> None:
    rebuilt = same_in_both_modes(Residual(timm_layers.DropPath(0.3)))
    assert type(rebuilt.drop).__name__ == "StochasticDepth" and rebuilt.drop.p == 0.3


def test_torchvision_stochastic_depth_keeps_its_mode() -> None:
    from torchvision.ops import StochasticDepth

    rebuilt = same_in_both_modes(Residual(StochasticDepth(0.25, "batch")))
    assert (rebuilt.drop.p, rebuilt.drop.mode) == (0.25, "batch")


def test_unscaled_drop_path_is_refused_with_its_reason() -> None:
    with pytest.raises(netspec.EmitError, match=r"^drop \(DropPath\): DropPath\(scale_by_keep=False\) keeps"):
        netspec.emit(Residual(timm_layers.DropPath(0.3, scale_by_keep=False)))
