"""Graph statements that call children of every container kind run the child the statement names.

Each case is compared to the same module written by hand in PyTorch: the spec's model gets the
hand-written model's weights (strict load, so the names agree) and must compute exactly its outputs;
the shapes inference recorded must be the shapes the real forward returns. Emit of an FPN-style
ModuleDict with digit keys round-trips and runs.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn

import netspec


def lin(i: int, o: int) -> dict[str, Any]:
    return {"type": "Linear", "in_features": i, "out_features": o}


class SeqListForm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seq = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 6))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.seq[2](x.repeat(1, 1)[:, :4]), self.seq[-3](x), self.seq(x)


class SeqMappingForm(nn.Module):
    """Keys "1" then "0": the name is not the position."""

    def __init__(self) -> None:
        super().__init__()
        self.seq = nn.Sequential(OrderedDict([("1", nn.Linear(4, 4)), ("0", nn.Linear(4, 5))]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        by_name = getattr(self.seq, "0")(x)  # seq['0'] in the spec: the child named "0"
        by_position = self.seq[0](x)  # seq[0]: the first child, named "1"
        return by_name, by_position, self.seq(x)


class ListOfBlocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = x
        for block in self.blocks:
            h = block(h)
        return self.blocks[2](x), self.blocks[-3](x), h


class DigitDict(nn.Module):
    """An FPN's per-stride heads: ModuleDict keys "8", "16"."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({"8": nn.Linear(4, 2), "16": nn.Linear(4, 3)})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.heads["16"](x), self.heads["8"](x)


class ZeroOneDict(nn.Module):
    """ModuleDict keys "1", "0": digits in the wrong order."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({"1": nn.Linear(4, 2), "0": nn.Linear(4, 3)})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.heads["0"](x), self.heads["1"](x)


class NamedDict(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({"cls": nn.Linear(4, 2), "box": nn.Linear(4, 3)})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.heads["box"](x), self.heads["cls"](x)


class ListInsideSequential(nn.Module):
    """A ModuleList element's own children: ``stages[1][0]``."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList([nn.Sequential(nn.Linear(4, 4)), nn.Sequential(nn.Linear(4, 7), nn.ReLU())])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.stages[1][0](x), self.stages[0](x)


CASES: dict[str, tuple[type[nn.Module], dict[str, Any], list[str]]] = {
    "sequential-list": (
        SeqListForm,
        {"seq": {"type": "Sequential", "layers": [lin(4, 4), "ReLU", lin(4, 6)]}},
        ["a = seq[2](x.repeat(1, 1)[:, :4])", "b = seq[-3](x)", "c = seq(x)"],
    ),
    "sequential-mapping-1-0": (
        SeqMappingForm,
        {"seq": {"type": "Sequential", "layers": {"1": lin(4, 4), "0": lin(4, 5)}}},
        ["a = seq['0'](x)", "b = seq[0](x)", "c = seq(x)"],
    ),
    "modulelist": (
        ListOfBlocks,
        {"blocks": {"type": "ModuleList", "layers": [lin(4, 4), lin(4, 4), lin(4, 4)]}},
        ["a = blocks[2](x)", "b = blocks[-3](x)", "c = blocks(x)"],
    ),
    "moduledict-digits-8-16": (
        DigitDict,
        {"heads": {"type": "ModuleDict", "layers": {"8": lin(4, 2), "16": lin(4, 3)}}},
        ["a = heads['16'](x)", "b = heads['8'](x)"],
    ),
    "moduledict-digits-1-0": (
        ZeroOneDict,
        {"heads": {"type": "ModuleDict", "layers": {"1": lin(4, 2), "0": lin(4, 3)}}},
        ["a = heads['0'](x)", "b = heads['1'](x)"],
    ),
    "moduledict-names": (
        NamedDict,
        {"heads": {"type": "ModuleDict", "layers": {"cls": lin(4, 2), "box": lin(4, 3)}}},
        ["a = heads['box'](x)", "b = heads.cls(x)"],
    ),
    "modulelist-of-sequentials": (
        ListInsideSequential,
        {
            "stages": {
                "type": "ModuleList",
                "layers": [
                    {"type": "Sequential", "layers": [lin(4, 4)]},
                    {"type": "Sequential", "layers": [lin(4, 7), "ReLU"]},
                ],
            }
        },
        ["a = stages[1][0](x)", "b = stages[0](x)"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_graph_calls_the_child_it_names(case: str) -> None:
    cls, layers, forward = CASES[case]
    torch.manual_seed(0)
    reference = cls()
    outputs = [stmt.split(" = ")[0] for stmt in forward]
    spec = {
        "netspec": 1,
        "input": {"shape": [4]},
        "model": {"type": "Graph", "inputs": ["x"], "layers": layers, "forward": forward, "outputs": outputs},
    }
    built = netspec.build(spec)
    built.model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 4)
    got, want = built.model(x), reference(x)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)
    # What validation inferred is what the forward computes.
    assert built.spec.inferred.shapes[""] == tuple(tuple(w.shape) for w in want)


def test_only_containers_named_0_to_n_minus_1_in_order_are_indexed_as_tuples() -> None:
    layers = {
        "blocks": {"type": "ModuleList", "layers": [lin(4, 4), lin(4, 4)]},
        "seq": {"type": "Sequential", "layers": {"1": lin(4, 4), "0": lin(4, 4)}},
        "heads": {"type": "ModuleDict", "layers": {"8": lin(4, 4), "16": lin(4, 4)}},
    }
    spec = {
        "netspec": 1,
        "input": {"shape": [4]},
        "model": {
            "type": "Graph",
            "inputs": ["x"],
            "layers": layers,
            "forward": ["a = blocks[1](x)", "b = seq['0'](a)", "c = heads['16'](b)"],
            "outputs": "c",
        },
    }
    code = netspec.build(spec).model.code
    assert "_blocks = tuple(self.blocks)" in code and "_blocks[1](x)" in code
    assert 'getattr(self.seq, "0")' in code and "_seq" not in code
    assert 'getattr(self.heads, "16")' in code and "_heads" not in code


class FPN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lateral = nn.ModuleDict({"8": nn.Conv2d(3, 4, 1), "16": nn.Conv2d(3, 4, 1)})
        self.smooth = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.smooth[1](self.lateral["8"](x) + self.lateral["16"](x))


def test_emit_of_a_digit_keyed_moduledict_round_trips_and_runs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = FPN()
    file = tmp_path / "fpn.yaml"
    file.write_text(netspec.emit(model, input_shape=(3, 8, 8)).to_yaml(), encoding="utf-8")
    rebuilt = netspec.build(file).model
    assert list(rebuilt.lateral) == ["8", "16"]
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(rebuilt(x), model(x))
