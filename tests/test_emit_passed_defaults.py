"""Emit of a traced child whose defaulted forward argument its parent passes a computed value (issue 12,
item J: timm's GC ViT passes ``q_global`` to every block, DLA ``shortcut`` to its bottlenecks): the child's
Graph takes that argument as an input instead of fixing it to its default, so the value reaches it. The
round trip (tests/zoo.py) compares the rebuilt model with the original in eval and train mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from zoo import round_trip

import netspec
from netspec.errors import EmitError


class _Attention(nn.Module):
    """GC ViT's window attention: a global query may be given; without one the keys' own are used."""

    def __init__(self) -> None:
        super().__init__()
        self.kv = nn.Linear(8, 16)

    def forward(self, x: torch.Tensor, q_global: torch.Tensor | None = None) -> torch.Tensor:
        k, v = self.kv(x).chunk(2, dim=-1)
        q = k if q_global is None else q_global
        return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v


class _Local(nn.Module):
    """Takes the global query as its siblings do, and ignores it (GC ViT's local-attention blocks)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor, q_global: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(x)


class _Block(nn.Module):
    def __init__(self, local: bool) -> None:
        super().__init__()
        self.attn = _Local() if local else _Attention()
        self.norm = nn.LayerNorm(8)

    def forward(self, x: torch.Tensor, q_global: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.attn(self.norm(x), q_global)


class _Stage(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.global_block = nn.Linear(8, 8)
        self.blocks = nn.ModuleList([_Block(local=True), _Block(local=False), _Block(local=False)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.global_block(x)
        for block in self.blocks:
            x = block(x, q)
        return x


def test_a_defaulted_argument_given_a_computed_value_becomes_the_childs_input() -> None:
    outcome = round_trip("gcvit-style", _Stage, (5, 8))
    assert outcome.status == "exact", outcome
    data = netspec.emit(_Stage(), input_shape=(5, 8)).to_dict()
    blocks = data["blocks"]
    assert blocks["_Block"]["body"]["inputs"] == ["x", "q_global"]
    assert blocks["_Local"]["body"]["inputs"] == ["x", "q_global"]  # kept although its forward ignores it
    assert blocks["_Attention"]["body"]["inputs"] == ["x", "q_global"]


def test_the_original_computes_something_else_without_the_value() -> None:
    """What would be lost if the argument were fixed to None: the outputs differ."""
    torch.manual_seed(0)
    stage = _Stage().eval()
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        without = sum(block(x) for block in stage.blocks)
        given = sum(block(x, stage.global_block(x)) for block in stage.blocks)
    assert not torch.allclose(without, given)


class _Twice(nn.Module):
    """The same child called with the value once and with the default once."""

    def __init__(self) -> None:
        super().__init__()
        self.block = _Block(local=False)
        self.q = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.block(x, self.q(x)))


def test_a_child_called_with_and_without_the_value_is_refused() -> None:
    with pytest.raises(EmitError) as err:
        netspec.emit(_Twice(), input_shape=(5, 8))
    message = str(err.value)
    assert message.startswith("the model (_Twice): calls block (_Block) with q_global= a value computed in forward")
    assert "at one call and None at another" in message


class _Tree(nn.Module):
    """DLA's tree: a list of computed values passed to a child's defaulted argument."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.root = _Root()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.root(x, [self.a(x), x])


class _Root(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor, children: list[torch.Tensor] | None = None) -> torch.Tensor:
        return self.fc(x) if children is None else self.fc(x + sum(children))


def test_a_list_of_computed_values_for_a_defaulted_argument_without_examples_is_refused() -> None:
    """Without input_shape the list's length is unknown; with it, the list is one input per element."""
    with pytest.raises(EmitError) as err:
        netspec.emit(_Tree())
    message = str(err.value)
    assert message.startswith("the model (_Tree): calls root (_Root) with children=[a, x], a list of values computed")
    assert "a Graph input takes one value" in message
    assert "hint: emit with input_shape=" in message
    outcome = round_trip("tree", _Tree, (8,))
    assert outcome.status == "exact", outcome.detail
