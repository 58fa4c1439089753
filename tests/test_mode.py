"""`training` in forward statements, drop_path / StochasticDepth, and `_` as a throwaway name.

Each good case is compared with a hand-written module (or torchvision / timm) after load_state_dict, in
train and in eval mode, eagerly and under torch.compile(fullgraph=True), torch.jit.script and torch.export.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import netspec
from tests.specfiles import write_spec_file

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
torchvision_ops = pytest.importorskip("torchvision.ops")
timm_layers = pytest.importorskip("timm.layers")


def graph(forward: list[str], layers: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "netspec": 1,
        "input": {"shape": [6]},
        "model": {"type": "Graph", "inputs": ["x"], "layers": layers or {}, "forward": forward, "outputs": "y"} | extra,
    }


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return h * 2.0 + 1.0 if self.training else torch.relu(h)


def branchy_spec() -> dict[str, Any]:
    return graph(
        ["h = fc(x)", "y = h * 2.0 + 1.0 if training else relu(h)"],
        {"fc": {"type": "Linear", "in_features": 6, "out_features": 6}},
    )


def test_runtime_branch_follows_train_and_eval_like_hand_written_code() -> None:
    model = netspec.build(branchy_spec()).model
    hand = Branchy()
    hand.load_state_dict(model.state_dict())
    x = torch.randn(4, 6)
    for mode in (True, False):
        model.train(mode), hand.train(mode)
        torch.testing.assert_close(model(x), hand(x), rtol=0, atol=0)
    # Only the taken branch runs: the generated forward is an if/else on self.training.
    assert "if training:" in model.code and "else:" in model.code
    assert "training = self.training" in model.code


def test_runtime_branch_under_compile_script_and_export() -> None:
    model = netspec.build(branchy_spec()).model
    hand = Branchy()
    hand.load_state_dict(model.state_dict())
    x = torch.randn(4, 6)
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # fullgraph: a graph break raises
    scripted = torch.jit.script(model)
    for mode in (True, False, True):
        model.train(mode), hand.train(mode), scripted.train(mode)
        expected = hand(x)
        torch.testing.assert_close(compiled(x), expected, rtol=0, atol=0)
        torch.testing.assert_close(scripted(x), expected, rtol=0, atol=0)
        exported = torch.export.export(model, (x,))  # captures the current mode
        torch.testing.assert_close(exported.module()(x), expected, rtol=0, atol=0)


def test_untaken_branch_draws_no_random_numbers() -> None:
    spec = graph(["y = x * bernoulli(full_like(x, 0.5)) if training else x"])
    with pytest.raises(netspec.SpecError):  # bernoulli is not in the allow-list: use rand_like
        netspec.build(spec)
    spec = graph(["y = x * (rand_like(x) > 0.5) if training else x + 0.0"])
    model = netspec.build(spec).model.eval()
    torch.manual_seed(0)
    model(torch.randn(2, 6))
    after_model = torch.rand(1)
    torch.manual_seed(0)
    torch.randn(2, 6)
    assert torch.equal(after_model, torch.rand(1)), "eval mode must not draw the training branch's numbers"


def test_not_training_swaps_the_branches() -> None:
    model = netspec.build(graph(["y = x if not training else x * 0.0"])).model
    x = torch.randn(2, 6)
    assert torch.equal(model.eval()(x), x)
    assert torch.equal(model.train()(x), torch.zeros_like(x))


def test_training_as_a_value_and_a_constant_branch() -> None:
    spec = graph(["p = 0.5 if training else 0.0", "y = dropout(x, p, training)"])
    model = netspec.build(spec).model
    x = torch.ones(200, 6)
    assert torch.equal(model.eval()(x), x)
    torch.manual_seed(1)
    out = model.train()(x)
    torch.manual_seed(1)
    assert torch.equal(out, F.dropout(x, 0.5, True))


@pytest.mark.parametrize(
    ("call", "hand"),
    [
        ("dropout(x, 0.3, training)", lambda x, t: F.dropout(x, 0.3, t)),
        ("dropout(x, 0.3, training=training)", lambda x, t: F.dropout(x, 0.3, training=t)),
        ("dropout(x, 0.3)", lambda x, t: F.dropout(x, 0.3, t)),
        ("alpha_dropout(x, 0.3, training=training)", lambda x, t: F.alpha_dropout(x, 0.3, t)),
        ("feature_alpha_dropout(x, 0.3, training)", lambda x, t: F.feature_alpha_dropout(x, 0.3, t)),
        ("drop_path(x, 0.3, training)", lambda x, t: timm_layers.drop_path(x, 0.3, t)),
        ("drop_path(x, 0.3)", lambda x, t: timm_layers.drop_path(x, 0.3, t)),
        (
            "drop_path(x, 0.3, training, mode='batch')",
            lambda x, t: torchvision_ops.stochastic_depth(x, 0.3, "batch", t),
        ),
    ],
)
def test_functions_with_a_training_flag_follow_the_mode(call: str, hand: Any) -> None:
    model = netspec.build(graph([f"y = {call}"])).model
    x = torch.randn(16, 6)
    for mode in (True, False):
        model.train(mode)
        torch.manual_seed(3)
        got = model(x)
        torch.manual_seed(3)
        torch.testing.assert_close(got, hand(x, mode), rtol=0, atol=0)


class HandBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(6))
        self.b = nn.Parameter(torch.zeros(6))
        self.register_buffer("mean", torch.zeros(6))
        self.register_buffer("var", torch.ones(6))
        self.register_buffer("imean", torch.zeros(6))
        self.register_buffer("ivar", torch.ones(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.batch_norm(x, self.mean, self.var, self.w, self.b, training=self.training)
        h = h.unsqueeze(-1).expand(-1, -1, 3)
        return F.instance_norm(h, self.imean, self.ivar, use_input_stats=self.training).mean(-1)


def test_batch_norm_and_instance_norm_take_training() -> None:
    spec = graph(
        [
            "h = batch_norm(x, mean, var, w, b, training=training)",
            "y = instance_norm(h.unsqueeze(-1).expand(-1, -1, 3), imean, ivar, training=training).mean(-1)",
        ],
        parameters={"w": {"shape": [6], "init": "ones"}, "b": {"shape": [6]}},
        buffers={
            "mean": {"shape": [6]},
            "var": {"shape": [6], "init": "ones"},
            "imean": {"shape": [6]},
            "ivar": {"shape": [6], "init": "ones"},
        },
    )
    model = netspec.build(spec).model
    hand = HandBatchNorm()
    hand.load_state_dict(model.state_dict())
    x = torch.randn(8, 6) * 3 + 1
    for mode in (True, False, True):
        model.train(mode), hand.train(mode)
        torch.testing.assert_close(model(x), hand(x))
        torch.testing.assert_close(model.mean, hand.mean)  # running stats move only in training
        torch.testing.assert_close(model.imean, hand.imean)
    assert not torch.equal(model.mean, torch.zeros(6))
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted.eval()(x), hand.eval()(x))


@pytest.mark.parametrize("p", [0.0, 0.2, 1.0])
@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_layer_equals_torchvision_and_timm(p: float, mode: str) -> None:
    spec = {
        "netspec": 1,
        "input": {"shape": [3, 4, 4]},
        "model": {"type": "Sequential", "layers": [{"type": "StochasticDepth", "p": p, "mode": mode}]},
    }
    model = netspec.build(spec).model
    reference = nn.Sequential(torchvision_ops.StochasticDepth(p, mode))
    x = torch.randn(8, 3, 4, 4)
    for training in (True, False):
        model.train(training), reference.train(training)
        torch.manual_seed(7)
        got = model(x)
        torch.manual_seed(7)
        torch.testing.assert_close(got, reference(x), rtol=0, atol=0)
        if mode == "row":
            torch.manual_seed(7)
            timm = timm_layers.DropPath(p).train(training)
            torch.testing.assert_close(got, timm(x), rtol=0, atol=0)
    assert torch.equal(torch.jit.script(model).eval()(x), x)


def test_drop_path_residual_block_under_compile_and_export() -> None:
    class Hand(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 6)
            self.drop = timm_layers.DropPath(0.25)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.drop(self.fc(x))

    spec = graph(
        ["y = x + drop_path(fc(x), 0.25, training)"], {"fc": {"type": "Linear", "in_features": 6, "out_features": 6}}
    )
    model = netspec.build(spec).model
    hand = Hand()
    hand.load_state_dict(model.state_dict())
    x = torch.randn(32, 6)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    for mode in (True, False):
        model.train(mode), hand.train(mode)
        for run in (model, compiled, torch.jit.script(model)):
            torch.manual_seed(5)
            got = run(x)
            torch.manual_seed(5)
            torch.testing.assert_close(got, hand(x), rtol=0, atol=0)
    exported = torch.export.export(model.eval(), (x,))
    torch.testing.assert_close(exported.module()(x), hand.eval()(x), rtol=0, atol=0)


def test_stochastic_depth_bad_arguments_are_spec_errors(tmp_path: Path) -> None:
    path = write_spec_file(
        tmp_path,
        """
        netspec: 1
        model:
          type: Sequential
          layers:
            - {type: StochasticDepth, p: 1.5}
            - {type: StochasticDepth, p: 0.1, mode: rows}
        """,
    )
    with pytest.raises(netspec.SpecError) as info:
        netspec.build(path)
    text = str(info.value)
    assert f"{path}:5:" in text and "p is a probability and must be in [0, 1], got 1.5" in text
    assert f"{path}:6:" in text and "mode" in text and "'rows'" in text


# -- `_` ---------------------------------------------------------------------------------------------


def test_underscore_throws_away_part_of_a_tuple() -> None:
    spec = graph(
        ["a, _ = attn(x, x, x)", "y = a"],
        {"attn": {"type": "MultiheadAttention", "embed_dim": 6, "num_heads": 2, "batch_first": True}},
    )
    spec["input"]["shape"] = [5, 6]
    model = netspec.build(spec).model.eval()
    hand = nn.MultiheadAttention(6, 2, batch_first=True).eval()
    hand.load_state_dict({k.removeprefix("attn."): v for k, v in model.state_dict().items()})
    x = torch.randn(2, 5, 6)
    torch.testing.assert_close(model(x), hand(x, x, x)[0])
    assert "_ =" not in model.code


@pytest.mark.parametrize(
    ("forward", "bad", "words"),
    [
        (["_ = relu(x)", "y = x"], 0, "'_' only throws away part of a tuple"),
        (["a, _ = chunk(x, 2, dim=1)", "y = a + _"], 1, "'_' is a thrown-away value and cannot be read"),
        (["training = relu(x)", "y = x"], 0, "the name 'training' is reserved"),
        (["h = relu(x)", "y = x if x.sum() > 0 else -x"], 1, "a run-time condition must be 'training'"),
        (["y = (x if training else -x) if training else x"], 0, "a run-time branch inside another one"),
    ],
)
def test_bad_uses_of_training_and_underscore(tmp_path: Path, forward: list[str], bad: int, words: str) -> None:
    lines = "\n".join(f'      - "{s}"' for s in forward)
    head = "netspec: 1\ninput: {shape: [6]}\nmodel:\n  type: Graph\n  inputs: [x]\n  forward:\n"
    text = f"{head}{lines}\n  outputs: y\n"
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(netspec.SpecError) as info:
        netspec.build(path)
    assert f"{path}:{7 + bad}:" in str(info.value)
    assert words in str(info.value)


def test_graph_input_named_training_is_refused(tmp_path: Path) -> None:
    path = write_spec_file(
        tmp_path,
        """
        netspec: 1
        model:
          type: Graph
          inputs: [x, training]
          forward: ["y = x"]
          outputs: y
        """,
    )
    with pytest.raises(netspec.SpecError) as info:
        netspec.read(path)
    assert f"{path}:4:" in str(info.value)
    assert "input name 'training' is reserved by the generated forward" in str(info.value)
