"""``if:`` on nodes and conditions known when the spec is read, against conditionally built PyTorch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

import netspec
from tests.specfiles import write_spec_file

SEQUENTIAL = """
netspec: 1
vars: {bn: BN, drop: DROP}
input: {shape: [4]}
model:
  type: Sequential
  layers:
    - {type: Linear, out_features: 8}
    - {type: BatchNorm1d, if: ${bn}}
    - {type: ReLU}
    - {type: Dropout, p: 0.1, if: ${drop}}
    - {type: Linear, out_features: 2}
"""


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("drop", [False, True])
def test_left_out_list_items_number_on_like_a_conditional_sequential(tmp_path: Path, bn: bool, drop: bool) -> None:
    text = SEQUENTIAL.replace("BN", str(bn).lower()).replace("DROP", str(drop).lower())
    model = netspec.build(write_spec_file(tmp_path, text)).model
    layers: list[nn.Module] = [nn.Linear(4, 8)]
    if bn:
        layers.append(nn.BatchNorm1d(8))
    layers.append(nn.ReLU())
    if drop:
        layers.append(nn.Dropout(0.1))
    layers.append(nn.Linear(8, 2))
    hand = nn.Sequential(*layers)
    assert list(model.state_dict()) == list(hand.state_dict())
    assert [type(m) for m in model] == [type(m) for m in hand]
    hand.load_state_dict(model.state_dict())
    x = torch.randn(3, 4)
    torch.testing.assert_close(model.eval()(x), hand.eval()(x))


def test_left_out_mapping_keys_are_absent_and_repeat_copies_number_on(tmp_path: Path) -> None:
    path = write_spec_file(
        tmp_path,
        """
        netspec: 1
        vars: {heads: false}
        input: {shape: [4]}
        model:
          type: Sequential
          layers:
            body:
              type: Sequential
              repeat: 5
              layer: {type: Linear, in_features: 4, out_features: 4, if: ${i % 2 == 0}}
            extra:
              type: ModuleDict
              layers: {a: {type: Linear, in_features: 4, out_features: 1}, b: {type: ReLU, if: ${heads}}}
              if: ${heads}
            act: ReLU
        """,
    )
    model = netspec.build(path).model
    hand = nn.Sequential()
    hand.add_module("body", nn.Sequential(*[nn.Linear(4, 4) for i in range(5) if i % 2 == 0]))
    hand.add_module("act", nn.ReLU())
    assert (
        list(model.state_dict())
        == list(hand.state_dict())
        == [f"body.{k}.{p}" for k in range(3) for p in ("weight", "bias")]
    )
    assert list(model._modules) == ["body", "act"]
    hand.load_state_dict(model.state_dict())
    x = torch.randn(2, 4)
    torch.testing.assert_close(model(x), hand(x))


class Bottleneck(nn.Module):
    """YOLOv5's Bottleneck, written by hand: the shortcut exists only when asked for and shapes allow."""

    def __init__(self, c: int, shortcut: bool) -> None:
        super().__init__()
        self.cv1 = nn.Conv2d(c, c, 1)
        self.cv2 = nn.Conv2d(c, c, 3, padding=1)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


BLOCK = """
netspec: 1
input: {shape: [4, 6, 6]}
blocks:
  Bottleneck:
    params: {c: int, shortcut: bool}
    body:
      type: Graph
      inputs: [x]
      layers:
        cv1: {type: Conv2d, out_channels: ${c}, kernel_size: 1}
        cv2: {type: Conv2d, out_channels: ${c}, kernel_size: 3, padding: 1}
      forward:
        - h = cv2(cv1(x))
        - y = x + h if ${shortcut} else h
      outputs: y
model:
  type: Sequential
  layers:
    - {type: Bottleneck, c: 4, shortcut: true}
    - {type: Bottleneck, c: 4, shortcut: false}
"""


def test_condition_known_when_read_keeps_only_the_taken_branch(tmp_path: Path) -> None:
    model = netspec.build(write_spec_file(tmp_path, BLOCK)).model
    hand = nn.Sequential(Bottleneck(4, True), Bottleneck(4, False))
    assert list(model.state_dict()) == list(hand.state_dict())
    hand.load_state_dict(model.state_dict())
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(model(x), hand(x))
    assert "x + h" in model[0].code and "+" not in model[1].code.split("def forward")[1]
    assert "if " not in model[0].code  # no run-time branch is left


def test_calling_a_left_out_child_names_it_and_the_line_of_its_if(tmp_path: Path) -> None:
    path = write_spec_file(
        tmp_path,
        """
        netspec: 1
        vars: {project: false}
        input: {shape: [4]}
        model:
          type: Graph
          inputs: [x]
          layers:
            fc: {type: Linear, out_features: 4}
            proj: {type: Linear, out_features: 4, if: ${project}}
          forward:
            - h = fc(x)
            - y = proj(x) + h if ${project} else h
            - z = proj(y)
          outputs: z
        """,
    )
    with pytest.raises(netspec.SpecError) as info:
        netspec.build(path)
    assert str(info.value).startswith(
        f"{path}:13:11: model.forward.2: layer 'proj' is left out: its 'if:' is false (line 9) in 'z = proj(y)'"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("${1}", "model.layers.1.if: if: must be true or false, got int 1"),
        ("${'yes'}", "model.layers.1.if: if: must be true or false, got str 'yes'"),
        ("yes", "model.layers.1.if: expected true or false or a ${...} reference, got str 'yes'"),
        ("${nope}", "model.layers.1.if: unknown name 'nope'"),
    ],
)
def test_if_must_be_a_bool(tmp_path: Path, value: str, message: str) -> None:
    text = SEQUENTIAL.replace("BN", "false").replace("DROP", "true").replace("if: ${bn}", f"if: {value}")
    path = write_spec_file(tmp_path, text)
    with pytest.raises(netspec.SpecError) as info:
        netspec.build(path)
    column = text.lstrip().splitlines()[7].index("if:") + 1
    assert f"{path}:8:{column}: {message}" in str(info.value)


def test_the_model_itself_cannot_be_left_out(tmp_path: Path) -> None:
    path = write_spec_file(tmp_path, "netspec: 1\nmodel: {type: ReLU, if: false}\n")
    with pytest.raises(netspec.SpecError) as info:
        netspec.build(path)
    assert f"{path}:2:" in str(info.value)
    assert "the model itself cannot be left out by 'if: false'" in str(info.value)


def test_the_json_schema_accepts_if_and_unquoted_refs() -> None:
    import json

    import jsonschema

    from netspec.frontend.source import load_text
    from tests.conftest import SCHEMA_FILE

    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    data = load_text(SEQUENTIAL.replace("BN", "false").replace("DROP", "true")).data
    jsonschema.validate(data, schema)
    data["model"]["layers"][1]["if"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


def test_a_block_used_nowhere_is_still_checked_with_its_defaults(tmp_path: Path) -> None:
    path = write_spec_file(
        tmp_path,
        """
        netspec: 1
        blocks:
          Spare:
            params: {width: {type: int, default: 8}}
            body: {type: Linear, in_features: 4, out_features: ${width}, bais: false}
          NeedsWidth:
            params: {width: int}
            body: {type: Linear, in_features: 4, out_features: ${width}}
        model: ReLU
        """,
    )
    with pytest.raises(netspec.SpecError) as info:
        netspec.build(path)
    text = str(info.value)
    assert f"{path}:5:" in text and "Linear has no argument 'bais'" in text
    assert "block Spare, used nowhere, checked with its defaults" in text
    assert len(info.value.problems) == 1  # NeedsWidth cannot be resolved without a width: left to its first use
