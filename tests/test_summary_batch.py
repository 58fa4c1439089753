"""The summary follows the batch dimension (a second probe at another batch size) instead of taking a
leading 2 for it: an LSTM's state is ``[2, B, 32]``, a sequence-first encoder's ``[7, B, 32]``, batch and
sequence merged ``[7B, 32]``. Each expected shape is written by hand and checked against a real torch
forward of the built model at two batch sizes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn

import netspec
from netspec.compiler.shapes import output_shapes
from netspec.summary import summarize_built

DATA = Path(__file__).parent / "data" / "summary"


def real_shapes(model: nn.Module, shape: tuple[int, ...], batch: int) -> dict[str, Any]:
    """Each module's output shapes at its first call, from a CPU forward at ``batch``."""
    found: dict[str, Any] = {}

    def hook(_m: nn.Module, _i: object, out: object, name: str) -> None:
        found.setdefault(name, output_shapes(out))

    handles = [
        m.register_forward_hook(lambda m, i, out, name=name: hook(m, i, out, name)) for name, m in model.named_modules()
    ]
    with torch.no_grad():
        model.eval()(torch.randn(batch, *shape))
    for h in handles:
        h.remove()
    return found


def at(label: Any, batch: int) -> Any:
    """A labelled shape ("[2, B, 32]" parts) made concrete at ``batch``."""
    if isinstance(label, str):
        m = re.fullmatch(r"(\d*)B([+-]\d+)?", label)
        if m is None:
            return int(label)
        return int(m.group(1) or 1) * batch + int(m.group(2) or 0)
    if isinstance(label, (list, tuple)):
        return tuple(at(d, batch) for d in label)
    return label


# written by hand from the spec: LSTM(8 -> 32, 2 layers, batch_first), an encoder layer given [S, B, E]
EXPECTED = {
    "": (("7B", "3"), (("2", "B", "32"), ("2", "B", "32"))),
    "rnn": (("B", "7", "32"), (("2", "B", "32"), ("2", "B", "32"))),
    "enc": ("7", "B", "32"),
    "enc.self_attn": (("7", "B", "32"), None),  # need_weights=False inside the encoder layer: weights None
    "enc.linear1": ("7", "B", "16"),
    "head": ("7B", "3"),
}


def test_shapes_follow_the_batch_as_a_real_forward_does() -> None:
    built = netspec.build(DATA / "lstm.yaml")
    summary = summarize_built(built, columns=("input", "output"))
    rows = {r.name: r for r in summary.rows}
    for name, label in EXPECTED.items():
        assert rows[name].output_shape == label, name
    assert rows["enc"].input_shape == ("7", "B", "32")
    for batch in (2, 5):
        real = real_shapes(built.model, (7, 8), batch)
        for name, label in EXPECTED.items():
            assert at(label, batch) == real[name], (name, batch)
    table = summary.to_table()
    assert "[2, B, 32]" in table and "[7, B, 32]" in table and "[7B, 3]" in table
    assert "[B, 7, 32]" in table


def test_json_writes_sizes_as_numbers_and_the_batch_as_B() -> None:
    summary = summarize_built(netspec.build(DATA / "lstm.yaml"), columns=("output",))
    layers = {layer["name"]: layer for layer in json.loads(summary.to_json())["layers"]}
    assert layers["rnn"]["output_shape"] == [["B", 7, 32], [[2, "B", 32], [2, "B", 32]]]
    assert layers["head"]["output_shape"] == ["7B", 3]


def test_a_real_leading_2_is_not_taken_for_the_batch() -> None:
    spec = {
        "netspec": 1,
        "input": {"shape": [4]},
        "model": {
            "type": "Graph",
            "inputs": ["x"],
            "layers": {"fc": {"type": "Linear", "in_features": 4, "out_features": 6}},
            "forward": ["y = fc(x).view(x.size(0), 2, 3).transpose(0, 1)"],
            "outputs": "y",
        },
    }
    built = netspec.build(spec)
    summary = summarize_built(built)
    assert summary.rows[0].output_shape == ("2", "B", "3")
    assert "[2, B, 3]" in summary.to_table()
    assert built.model(torch.randn(5, 4)).shape == (2, 5, 3)


def test_a_model_that_only_runs_at_batch_2_says_so() -> None:
    spec = {
        "netspec": 1,
        "input": {"shape": [4]},
        "model": {
            "type": "Graph",
            "inputs": ["x"],
            "layers": {"fc": {"type": "Linear", "in_features": 4, "out_features": 6}},
            "forward": ["y = fc(x).view(2, 6)"],
            "outputs": "y",
        },
    }
    summary = summarize_built(netspec.build(spec))
    footer = dict(summary.footer)
    assert footer["Shapes"].startswith("at batch 2; a leading 2 is shown as B (at batch 3: ")
    assert "view(2, 6)" in footer["Shapes"]
    assert "Shapes: at batch 2" in summary.to_table()


LSTM_THEN = """\
netspec: 1
input: {shape: [7, 8]}
model:
  type: Graph
  inputs: [x]
  layers:
    rnn: {type: LSTM, input_size: 8, hidden_size: 32, num_layers: 2, batch_first: true}
  forward:
    - out, state = rnn(x)
    - y = STATEMENT
  outputs: y
"""


def test_messages_write_the_batch_as_B_where_it_is(expect_spec_error: Callable[..., netspec.SpecError]) -> None:
    # torch: bmm([2, b, 32], [b, 7, 32]) wants the second's leading dims to be [2, 32], gets [b, 7]
    err = expect_spec_error(
        LSTM_THEN.replace("STATEMENT", "bmm(state[0], out)"),
        line=10,
        path="model.forward.1",
        words=("failed on inputs [2, B, 32], [B, 7, 32]", "to be: [2, 32] but got: [B, 7]"),
        count=1,
    )
    assert "[B, 2, 32]" not in str(err) and "[2, 7]" not in str(err)
    with pytest.raises(RuntimeError, match=r"to be: \[2, 32\] but got: \[5, 7\]"):  # the real forward at batch 5
        out, (h, _) = nn.LSTM(8, 32, num_layers=2, batch_first=True)(torch.randn(5, 7, 8))
        torch.bmm(h, out)


def test_merged_batch_dims_in_torchs_own_message(expect_spec_error: Callable[..., netspec.SpecError]) -> None:
    # [b * 7, 32] @ [16, 4]: torch (its meta kernel) names both shapes, the merged dim 7b included
    expect_spec_error(
        LSTM_THEN.replace("STATEMENT", "out.reshape(x.size(0) * 7, 32) @ w").replace(
            "  forward:", "  parameters:\n    w: {shape: [16, 4], init: ones}\n  forward:"
        ),
        line=12,
        path="model.forward.1",
        words=("failed on inputs [7B, 32], [16, 4]", "but got [7B, 32] X [16, 4]"),
        count=1,
    )
