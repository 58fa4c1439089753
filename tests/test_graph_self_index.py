"""``self[0](x)`` / ``self['0'](x)``: a Graph calls its own children by position or name, so children named
``0, 1, ...`` (a Sequential subclass with its own forward, as timm's PiT, HRNet and VoVNet write them) keep
their state_dict keys; and emit writes that spelling."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from conftest import problem_lines
from zoo import round_trip

import netspec

SPEC = """
netspec: 1
model:
  type: Graph
  inputs: [x]
  layers:
    "0": {type: Linear, in_features: 4, out_features: 4}
    "1": {type: Tanh}
    "2": {type: Linear, in_features: 4, out_features: 2}
  forward:
    - h = self[0](x)
    - h = self['1'](h) + h
    - y = self[-1](h)
  outputs: y
"""


class Residual(nn.Sequential):
    """A Sequential subclass with its own forward: its children are named 0, 1, 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self[0](x)
        h = self[1](h) + h
        return self[2](h)


def test_self_index_calls_own_children_and_keeps_state_dict_keys(write_spec: Callable[..., Path]) -> None:
    model = netspec.build(write_spec(SPEC)).model
    reference = Residual(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    assert list(model.state_dict()) == list(reference.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(3, 4)
    torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("y = self[3](x)", "index 3 is out of range for self (3 children: positions -3..2)"),
        ("y = self['7'](x)", "self has no child '7'"),
        ("y = self(x)", "'self' only indexes the Graph's own children"),
        ("y = self[x](x)", "self[...] is indexed by a value computed in forward"),
    ],
)
def test_self_index_errors_name_the_statement(write_spec: Callable[..., Path], statement: str, message: str) -> None:
    spec = SPEC.replace("    - y = self[-1](h)", f"    - {statement}")
    with pytest.raises(netspec.SpecError) as err:
        netspec.build(write_spec(spec))
    lines = problem_lines(err.value)
    assert len(lines) == 1 and "spec.yaml:13:" in lines[0] and "model.forward.2" in lines[0], lines
    assert message in lines[0], lines


class Chain(nn.Sequential):
    """timm's SequentialList / SequentialTuple pattern: iterate self, with a residual the plain Sequential lacks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self:
            x = module(x) + x
        return x


def test_emit_writes_self_index_for_numbered_children() -> None:
    def make() -> nn.Module:
        return nn.Sequential(nn.Linear(6, 6), Chain(nn.Linear(6, 6), nn.GELU(), nn.Linear(6, 6)))

    text = netspec.emit(make()).to_yaml()
    assert "self[0](" in text and "self[2](" in text, text
    outcome = round_trip("chain", make, (6,))
    assert outcome.status == "exact", outcome


class AppendList(nn.Sequential):
    """VoVNet's SequentialAppendList: forward appends to a list it is given, which no Graph input can be."""

    def forward(self, x: torch.Tensor, concat_list: list[torch.Tensor]) -> torch.Tensor:
        for i, module in enumerate(self):
            concat_list.append(module(x if i == 0 else concat_list[-1]))
        return torch.cat(concat_list, dim=1)


class Osa(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mid = AppendList(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mid(x, [x])


def test_a_list_input_mutated_in_forward_is_refused_with_the_reason() -> None:
    with pytest.raises(netspec.EmitError) as err:
        netspec.emit(Osa())
    assert str(err.value).startswith(
        "mid (AppendList): calls .append() on its forward input 'concat_list', a Python list (its annotation)"
    ), str(err.value)
