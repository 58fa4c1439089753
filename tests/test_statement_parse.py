"""Graph statements parsed once per shape (``statement_parse``): the same model, the same messages, the same columns.

A 10,000-layer Graph has a handful of statement shapes; each is parsed once, its names kept apart. What a
Graph computes, what its problems say and where their caret points must not depend on it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from conftest import assert_problem

import netspec
from netspec.compiler.statement_parse import parse_shared, shape_of
from netspec.errors import SpecError


def test_names_become_placeholders_and_everything_else_stays() -> None:
    shape, names = shape_of("y = f(x, dim=1) + 1e5 * h.view(2) if not training else None")  # type: ignore[misc]
    # keyword-argument names, attributes, numbers and keywords are kept; every other name is a placeholder
    assert shape == "y = ǂ(ǂ, dim=1) + 1e5 * ǂ.view(2) if not ǂ else None"
    assert names == ["f", "x", "h", "training"]
    assert shape_of("h = l0(h)")[0] == shape_of("h = l7(h)")[0] == "h = ǂ(ǂ)"  # type: ignore[index]


@pytest.mark.parametrize(
    "text",
    ["h = pad(x, 'a')", 'h = f("x")', "h = f(x)  # note", "h = x. view(2)", "h = f(x) \\\n + 1", "h = ü(x)"],
)
def test_text_it_cannot_read_exactly_is_parsed_as_written(text: str) -> None:
    assert shape_of(text) is None and parse_shared(text) is None


def test_a_shared_tree_is_the_statements_own_tree_with_its_names_numbered() -> None:
    for text in ("a, _ = attn(h, h, h)", "y = heads[0](h) if training else -h", "out, (h, c) = lstm(x, dim=2)"):
        found = parse_shared(text)
        own = ast.parse(text)
        assert found is not None
        tree, names = found
        restored = ast.dump(tree)
        for k, name in sorted(enumerate(names), reverse=True):  # ǂ10 before ǂ1
            restored = restored.replace(f"'ǂ{k}'", repr(name))
        assert restored == ast.dump(own, include_attributes=False)


class Chain(nn.Module):
    """What the spec below says, written by hand: five linear layers with a residual every other one."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.ModuleList(nn.Linear(4, 4) for _ in range(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.fc):
            h = layer(h) + h if i % 2 else layer(h)
        return h


def chain_spec(extra: str | None = None) -> dict:
    layers = {f"fc{i}": {"type": "Linear", "in_features": 4, "out_features": 4} for i in range(5)}
    forward = [f"h = fc{i}(h) + h" if i % 2 else f"h = fc{i}({'x' if i == 0 else 'h'})" for i in range(5)]
    if extra is not None:
        forward.insert(3, extra)
    return {
        "netspec": 1,
        "input": {"shape": [4]},
        "model": {"type": "Graph", "inputs": ["x"], "layers": layers, "forward": forward, "outputs": "h"},
    }


def test_statements_of_one_shape_call_each_its_own_layer() -> None:
    model = netspec.build(chain_spec()).model
    hand = Chain()
    hand.load_state_dict({k.replace("fc", "fc.", 1): v for k, v in model.state_dict().items()})
    x = torch.randn(3, 4)
    torch.testing.assert_close(model(x), hand(x))


def test_a_failing_statement_among_shared_ones_is_reported_from_its_own_text(tmp_path: Path) -> None:
    lines = ["netspec: 1", "input: {shape: [4]}", "model:", "  type: Graph", "  inputs: [x]", "  layers:"]
    lines += [f"    fc{i}: {{type: Linear, in_features: 4, out_features: 4}}" for i in range(5)]
    lines += ["  forward:", "    - h = fc0(x)", "    - h = fc1(h) + h", "    - h = fc2(h)", "    - h = fc3(h) + hh"]
    lines += ["    - h = fc4(h)", "  outputs: h"]
    path = tmp_path / "spec.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SpecError) as info:
        netspec.read(path)
    text = assert_problem(
        info.value,
        file=path,
        line=16,
        path="model.forward.3",
        words=("name 'hh' is not defined before this statement in 'h = fc3(h) + hh'", "did you mean"),
    )
    assert "hh" in text
    location = info.value.problems[0].location
    # the caret is under `hh`: column 8 + len("h = fc3(h) + ") in the file, not a column of the shared shape
    assert location is not None and location.column == len("    - ") + len("h = fc3(h) + ") + 1


def test_keyword_arguments_and_attributes_keep_their_names() -> None:
    spec = {
        "netspec": 1,
        "input": {"shape": [3, 4]},
        "model": {
            "type": "Graph",
            "inputs": ["x"],
            "layers": {"fc": {"type": "Linear", "in_features": 4, "out_features": 4}},
            "forward": ["h = fc(x)", "s = softmax(h, dim=1)", "t = s.transpose(1, 2)", "y = sum(t, dim=-1)"],
            "outputs": "y",
        },
    }
    model = netspec.build(spec).model
    x = torch.randn(2, 3, 4)
    want = torch.softmax(model.fc(x), dim=1).transpose(1, 2).sum(dim=-1)
    torch.testing.assert_close(model(x), want)


def test_a_name_written_like_a_placeholder_is_a_name_like_any_other() -> None:
    # ǂ0 is a valid identifier; such a statement is parsed as written (not ASCII), so its names are its own.
    # It used to be looked up as the first name of a shared tree: an IndexError instead of a model.
    layers = {"l0": {"type": "Linear", "in_features": 4, "out_features": 4}}
    model = {"type": "Graph", "inputs": ["x"], "layers": layers, "forward": ["ǂ0 = l0(x)", "y = relu(ǂ0)"]}
    spec = {"netspec": 1, "input": {"shape": [4]}, "model": {**model, "outputs": "y"}}
    built = netspec.build(spec).model
    x = torch.randn(2, 4)
    torch.testing.assert_close(built(x), torch.relu(nn.functional.linear(x, built.l0.weight, built.l0.bias)))
    bad = {**spec, "model": {**model, "forward": ["ǂ0 = l0(x)", "y = ǂ0 + ǂ1"], "outputs": "y"}}
    with pytest.raises(SpecError, match="name 'ǂ1' is not defined before this statement in 'y = ǂ0 \\+ ǂ1'"):
        netspec.read(bad)
