"""Layers seen already (``call_memo``, resolve's check memo): each repeat gets its own sizes, output and messages.

Identical layers called with identical inputs are answered once; what a user sees — the sizes filled in, the
model that builds, the summary's per-layer shapes, who produced a tensor in a message — must be what
inferring each of them on its own gives.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

import netspec
from netspec.errors import SpecError

ExpectError = Callable[..., SpecError]

D = 8


def chain(forward: list[str], layers: dict) -> dict:
    return {
        "netspec": 1,
        "input": {"shape": [5, D]},
        "model": {"type": "Graph", "inputs": ["x"], "layers": layers, "forward": forward, "outputs": "y"},
    }


class Hand(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.fc1, self.fc2 = nn.Linear(D, D), nn.Linear(D, 3)
        self.attn = nn.MultiheadAttention(D, 2, batch_first=True)
        self.rnn = nn.LSTM(D, D, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(self.n1(x))
        a, _ = self.attn(h, h, h)
        r, _ = self.rnn(a)
        return self.fc2(self.n2(r))


def repeated() -> dict:
    layers = {
        "n1": {"type": "LayerNorm"},  # normalized_shape and in_features are inferred, for each layer
        "n2": {"type": "LayerNorm"},
        "fc1": {"type": "Linear", "out_features": D},
        "fc2": {"type": "Linear", "out_features": 3},
        "attn": {"type": "MultiheadAttention", "embed_dim": D, "num_heads": 2, "batch_first": True},
        "rnn": {"type": "LSTM", "hidden_size": D, "batch_first": True},
    }
    forward = ["h = fc1(n1(x))", "a, _ = attn(h, h, h)", "r, _ = rnn(a)", "y = fc2(n2(r))"]
    return chain(forward, layers)


def test_repeated_layers_build_the_hand_written_model() -> None:
    model = netspec.build(repeated()).model.eval()
    hand = Hand().eval()
    hand.load_state_dict(model.state_dict())
    x = torch.randn(2, 5, D)
    with torch.no_grad():
        torch.testing.assert_close(model(x), hand(x))


def test_every_repeat_has_its_own_call_record_and_sizes() -> None:
    spec = netspec.read(repeated())
    calls = spec.inferred.calls.layers
    assert [c.output for c in calls["n1"]] == [(2, 5, D)] and [c.output for c in calls["n2"]] == [(2, 5, D)]
    assert calls["rnn"][0].output == ((2, 5, D), ((1, 2, D), (1, 2, D)))
    root = spec.inferred.root
    assert root.children["n2"].args["normalized_shape"] == [D] and root.children["fc2"].args["in_features"] == D


def test_a_mismatch_after_identical_layers_names_the_one_that_produced_it(expect_spec_error: ExpectError) -> None:
    text = f"""\
    netspec: 1
    input: {{shape: [5, {D}]}}
    model:
      type: Graph
      inputs: [x]
      layers:
        a: {{type: LayerNorm, normalized_shape: {D}}}
        b: {{type: LayerNorm, normalized_shape: {D}}}
        c: {{type: LayerNorm, normalized_shape: {D}}}
        fc: {{type: Linear, in_features: 4, out_features: 2}}
      forward: [h = a(x), h = b(h), g = c(x), y = fc(h)]
      outputs: y
    """
    err = expect_spec_error(
        text, line=10, path="model.layers.fc.in_features", words=("fc expects 4 input features but b produces 8",)
    )
    assert "c produces" not in str(err)


def test_identical_bad_layers_are_each_reported_at_their_own_line(tmp_path: Path) -> None:
    """resolve checks each distinct (type, arguments) once: every copy still gets its problem, at its line."""
    lines = ["netspec: 1", "model:", "  type: Sequential", "  layers:"]
    lines += ["    - {type: Dropout, p: 1.5}" for _ in range(3)]
    path = tmp_path / "spec.yaml"
    path.write_text("\n".join(lines) + "\n")
    try:
        netspec.read(path)
    except SpecError as err:
        found = [(p.location.line if p.location else None, p.message) for p in err.problems]
    else:
        raise AssertionError("Dropout p=1.5 validated")
    assert [line for line, _ in found] == [5, 6, 7]
    assert all("p" in message and "1.5" in message for _, message in found)


def test_identical_layers_get_their_own_arguments() -> None:
    spec = netspec.read(chain(["h = a(x)", "y = b(h)"], {"a": {"type": "LayerNorm"}, "b": {"type": "LayerNorm"}}))
    a, b = spec.inferred.root.children["a"], spec.inferred.root.children["b"]
    assert a.args == b.args and a.args is not b.args
    assert spec.resolved.root.children["a"].args is not spec.resolved.root.children["b"].args
