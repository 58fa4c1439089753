"""Emit of lists of tensors passed between modules (issue 12, item E: timm's SelecSLS, VoVNet, HRNet, DLA):
a traced child whose forward takes ``List[Tensor]`` has a Graph with one input per element, the caller
passes the elements, a list output comes back as the child's flat tuple; a child that appends to (or
assigns into) the list its caller passed leaves the caller's list changed alike, and the caller reading
what the child put there is refused. The round trip (tests/zoo.py) compares the rebuilt model with the
hand-written original in eval and train mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from zoo import round_trip

import netspec
from netspec.errors import EmitError


class _Pairwise(nn.Module):
    """HRNet's multi-branch module: a list in, each element replaced in the list, a list out."""

    def __init__(self) -> None:
        super().__init__()
        self.branches = nn.ModuleList([nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1)])

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        for i, branch in enumerate(self.branches):
            x[i] = branch(x[i])
        return [x[0] + x[1], x[1] * len(x)]


class _SelectFirst(nn.Module):
    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, dim=1) if len(x) > 2 else x[0] - x[-1]


class _ListNet(nn.Module):
    def __init__(self, read_changed: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.pair = _Pairwise()
        self.pair2 = _Pairwise()
        self.select = _SelectFirst()
        self.read_changed = read_changed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        parts = [h, torch.relu(h)]
        out = self.pair2(self.pair(parts))
        # pair assigned into parts: parts[0] is now its branch's output (in torch as in the trace)
        return self.select(out) + (parts[0] if self.read_changed else h)


def test_a_list_of_tensors_in_and_out_of_a_child_round_trips() -> None:
    outcome = round_trip("lists", _ListNet, (3, 8, 8))
    assert outcome.status == "exact", outcome.detail
    spec = netspec.emit(_ListNet().eval(), input_shape=(3, 8, 8)).to_dict()
    pair = spec["blocks"]["_Pairwise"]["body"]
    assert pair["inputs"] == ["x_0", "x_1"]  # one Graph input per element
    assert len(pair["outputs"]) == 2
    forward = spec["model"]["forward"]
    assert any("pair(stem_out, relu(stem_out))" in s for s in forward), forward  # the elements, by position


def test_reading_what_a_child_assigned_into_its_callers_list_is_refused() -> None:
    with pytest.raises(EmitError, match=r"reads a value that the child pair put into a list passed to it"):
        netspec.emit(_ListNet(read_changed=True).eval(), input_shape=(3, 8, 8))


class _Append(nn.Module):
    """VoVNet's SequentialAppendList: appends to the list its caller passed and concatenates it."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)])

    def forward(self, x: torch.Tensor, concat_list: list[torch.Tensor]) -> torch.Tensor:
        for conv in self.convs:
            concat_list.append(conv(concat_list[-1] if len(concat_list) > 1 else x))
        return torch.cat(concat_list, dim=1)


class _Osa(nn.Module):
    def __init__(self, read_appended: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.mid = _Append()
        self.read_appended = read_appended

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        output = [x]
        y = self.mid(x, output)
        if self.read_appended:
            return y.sum(1, keepdim=True) + output[-1]  # what the child appended
        return y.sum(1, keepdim=True) + output[0] * len(output)


def test_a_child_appending_to_its_callers_list_round_trips() -> None:
    outcome = round_trip("append", _Osa, (3, 4, 4))
    assert outcome.status == "exact", outcome.detail


def test_reading_what_a_child_appended_is_refused() -> None:
    with pytest.raises(EmitError, match=r"reads a value that the child mid put into a list passed to it") as err:
        netspec.emit(_Osa(read_appended=True).eval(), input_shape=(3, 4, 4))
    assert str(err.value).startswith("the model (_Osa): forward cannot be traced")


class _Tree(nn.Module):
    """DLA's tree: a defaulted list argument, given the caller's computed values, appended to here."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(
        self, x: torch.Tensor, shortcut: torch.Tensor | None = None, children: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        children = [] if children is None else children
        children.append(self.conv(x))
        return torch.cat(children, 1).sum(1, keepdim=True).expand_as(x)


class _Dla(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.tree = _Tree()
        self.tree2 = _Tree()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.tree2(self.tree(x), None, [x, x * 2])


def test_a_list_of_computed_values_for_a_defaulted_argument_round_trips() -> None:
    outcome = round_trip("dla", _Dla, (3, 4, 4))
    assert outcome.status == "exact", outcome.detail
    spec = netspec.emit(_Dla().eval(), input_shape=(3, 4, 4)).to_dict()
    graphs = {k: v["body"]["inputs"] for k, v in spec.get("blocks", {}).items()}
    assert ["x", "children_0", "children_1"] in graphs.values(), graphs


class _TwoLengths(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.select = _SelectFirst()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.select([h, h]) + self.select([h, h, h]).sum(1, keepdim=True)


def test_a_child_called_with_lists_of_other_lengths_is_refused() -> None:
    with pytest.raises(EmitError, match=r"select \(_SelectFirst\): forward's 'x' is called with lists of different"):
        netspec.emit(_TwoLengths().eval(), input_shape=(3, 4, 4))
