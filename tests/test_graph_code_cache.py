"""Identical Graph modules share one generated ``forward`` (compiler/code_cache.py) and stay correct.

torch.fx generates and compiles Python for every GraphModule instance, and again for each child
when its parent is made. netspec generates each distinct graph once: repeated blocks share the
class holding the compiled ``forward``. Checked here: the code is generated once per distinct
graph, outputs equal a hand-written module with the same weights, graphs that differ (a constant,
1 against 1.0, a run-time branch) get their own code, an instance whose graph is edited afterwards
gets its own class, and shared instances pickle and deepcopy.
"""

from __future__ import annotations

import copy
import io
import operator
import pickle
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

import netspec
from netspec.compiler.code_cache import CLASSES


def _spec(repeat: int = 4, scale: Any = 2) -> dict[str, Any]:
    return {
        "netspec": 1,
        "seed": 0,
        "input": {"shape": [6]},
        "blocks": {
            "Inner": {
                "params": {"d": "int"},
                "body": {
                    "type": "Graph",
                    "inputs": ["x"],
                    "layers": {"fc": {"type": "Linear", "in_features": "${d}", "out_features": "${d}"}},
                    "forward": [f"y = relu(fc(x)) * {scale}"],
                    "outputs": "y",
                },
            },
            "Block": {
                "params": {"d": "int"},
                "body": {
                    "type": "Graph",
                    "inputs": ["x"],
                    "layers": {
                        "norm": {"type": "LayerNorm", "normalized_shape": "${d}"},
                        "inner": {"type": "Inner", "d": "${d}"},
                    },
                    "forward": ["y = x + inner(norm(x))"],
                    "outputs": "y",
                },
            },
        },
        "model": {
            "type": "Graph",
            "inputs": ["x"],
            "layers": {"blocks": {"type": "ModuleList", "repeat": repeat, "layer": {"type": "Block", "d": 6}}},
            "forward": ["h = x", *[f"h = blocks[{i}](h)" for i in range(repeat)]],
            "outputs": "h",
        },
    }


class HandBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(6)
        self.fc = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.fc(self.norm(x))) * 2


def test_repeated_blocks_share_one_generated_forward_and_compute_what_pytorch_does(monkeypatch: Any) -> None:
    CLASSES.clear()
    generated: list[int] = []
    real = fx.Graph.python_code

    def counting(self: fx.Graph, *args: Any, **kwargs: Any) -> Any:
        generated.append(len(self.nodes))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(fx.Graph, "python_code", counting)
    model = netspec.build(_spec()).model
    assert len(generated) == 3  # root, Block, Inner: once each, for validation's meta build and this one
    blocks = list(model.blocks)
    assert len({type(b) for b in blocks}) == 1 and len({type(b.inner) for b in blocks}) == 1
    assert type(blocks[0]).__name__ == "Block" and type(blocks[0].inner).__name__ == "Inner"
    assert type(blocks[0].inner) is not type(blocks[0])
    hand = nn.Sequential(*[HandBlock() for _ in blocks])
    for mine, theirs in zip(blocks, hand, strict=True):
        theirs.norm.load_state_dict(mine.norm.state_dict())
        theirs.fc.load_state_dict(mine.inner.fc.state_dict())
    x = torch.randn(3, 6)
    torch.testing.assert_close(model(x), hand(x), rtol=0, atol=0)
    assert list(model.state_dict()) == [
        f"blocks.{i}.{k}" for i in range(4) for k in ("norm.weight", "norm.bias", "inner.fc.weight", "inner.fc.bias")
    ]


def test_graphs_that_differ_by_a_constant_type_get_their_own_code() -> None:
    as_int = netspec.build(_spec(repeat=1, scale=2)).model
    as_float = netspec.build(_spec(repeat=1, scale=2.0)).model
    assert type(as_int.blocks[0].inner) is not type(as_float.blocks[0].inner)
    assert "y = relu * 2;" in as_int.blocks[0].inner.code
    assert "y = relu * 2.0;" in as_float.blocks[0].inner.code


def test_an_edited_instance_gets_its_own_class_and_the_others_keep_theirs() -> None:
    model = netspec.build(_spec(repeat=2)).model
    first, second = model.blocks[0].inner, model.blocks[1].inner
    x = torch.randn(2, 6)
    before = second(x)
    for node in first.graph.nodes:
        if node.target is operator.mul:
            node.args = (node.args[0], 3)
    first.recompile()
    assert type(first) is not type(second)
    torch.testing.assert_close(first(x), torch.relu(first.fc(x)) * 3)
    torch.testing.assert_close(second(x), before)
    assert "* 3" in first.code and "* 3" not in second.code


def test_shared_instances_pickle_and_deepcopy() -> None:
    model = netspec.build(_spec(repeat=3)).model
    x = torch.randn(2, 6)
    want = model(x)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    for other in (pickle.loads(pickle.dumps(model)), torch.load(buffer, weights_only=False)):
        torch.testing.assert_close(other(x), want, rtol=0, atol=0)
        assert list(other.state_dict()) == list(model.state_dict())
        assert type(other.blocks[0]).__name__ == "Block" and type(other.blocks[1]) is type(other.blocks[0])
    copied = copy.deepcopy(model)  # fx's deepcopy makes a class of its own (named GraphModule, as fx names it)
    torch.testing.assert_close(copied(x), want, rtol=0, atol=0)
    assert type(copied.blocks[0]) is not type(model.blocks[0])
    assert [type(b).__name__ for b in model.blocks] == ["Block"] * 3  # the shared class is not renamed


def test_an_eval_frozen_block_shares_the_code_and_an_edit_stays_its_own() -> None:
    spec = _spec(repeat=2) | {"freeze": [{"type": "Inner", "eval": True}]}
    model = netspec.build(spec).model.train()
    first, second = model.blocks[0].inner, model.blocks[1].inner
    assert not first.training and not second.training  # freeze: eval keeps them in eval mode
    assert type(first) is type(second)
    x = torch.randn(2, 6)
    before = second(x)
    for node in first.graph.nodes:
        if node.target is operator.mul:
            node.args = (node.args[0], 5)
    first.recompile()
    torch.testing.assert_close(first(x), torch.relu(first.fc(x)) * 5)
    torch.testing.assert_close(second(x), before)  # the sibling (same eval-frozen class before) is unchanged
    model.train()
    assert not first.training and not second.training
    fresh = netspec.build(_spec(repeat=1)).model.blocks[0].inner
    torch.testing.assert_close(fresh(x), torch.relu(fresh.fc(x)) * 2)  # later builds get the original code
