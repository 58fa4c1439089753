"""Problems in a block body or a repeated layer are said once, with the instances they occur in; block
parameter defaults go through ``${...}`` substitution and are checked against their declared type; a var's
error is at the var's own line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import netspec

ExpectError = Callable[..., netspec.SpecError]

BODY_ERROR = """\
netspec: 1
blocks:
  Foo:
    params: {w: int}
    body:
      type: Sequential
      layers:
        - {type: Linear, in_features: 8, out_features: "${w}", bais: true}
        - {type: ReLU, inplace: maybe}
model:
  type: Sequential
  layers:
    - {repeat: 33, layer: {type: Foo, w: 3}}
"""


def test_an_error_in_a_block_body_is_reported_once_with_its_33_instances(expect_spec_error: ExpectError) -> None:
    err = expect_spec_error(BODY_ERROR, line=8, path="blocks.Foo.body.layers.0.bais", count=2)
    used_by = "(in block Foo, used by layer 0, layer 1, layer 2, layer 3, … (33 instances))"
    assert err.problems[0].message == f"Linear has no argument 'bais' {used_by}"
    assert err.problems[0].hint == "did you mean 'bias'?"
    second = err.problems[1]
    assert second.location is not None and second.location.line == 9
    assert second.message == f"ReLU.inplace: expected bool, got str 'maybe' {used_by}"


def test_the_cli_prints_each_body_problem_once(cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(BODY_ERROR, encoding="utf-8")
    code, out, err = cli("validate", spec)
    assert code != 0 and out == ""
    assert err.count("has no argument 'bais'") == 1 and err.count("expected bool") == 1
    assert err.startswith("2 problems in spec")


def test_instances_are_named_by_their_module_path(expect_spec_error: ExpectError) -> None:
    text = """\
    netspec: 1
    blocks:
      Inner:
        params: {}
        body: {type: Dropout, p: 2.0}
      Outer:
        params: {}
        body: {type: Sequential, layers: {left: Inner, right: Inner}}
    model: {type: Sequential, layers: {a: Outer, b: Outer, c: Outer}}
    """
    err = expect_spec_error(text, line=5, path="blocks.Inner.body.p", count=1)
    assert err.problems[0].message.endswith(
        "(in block Inner, used by a.left, a.right, b.left, b.right, … (6 instances))"
    )


def test_an_error_in_one_instance_only_says_which_and_where_it_is_used(expect_spec_error: ExpectError) -> None:
    text = """\
    netspec: 1
    blocks:
      Unit:
        params: {g: int}
        body: {type: GroupNorm, num_groups: "${g}", num_channels: 16}
    model: {type: Sequential, layers: {a: {type: Unit, g: 4}, b: {type: Unit, g: 3}, c: {type: Unit, g: 3}}}
    """
    err = expect_spec_error(text, line=5, path="blocks.Unit.body*", count=1)
    assert err.problems[0].message.endswith("(in block Unit, used by b, c (2 instances))")
    single = text.replace("c: {type: Unit, g: 3}", "c: {type: Unit, g: 8}")
    err = expect_spec_error(single, line=5, path="blocks.Unit.body*", count=1)
    assert err.problems[0].message.endswith("(in block Unit, used by b at model.layers.b)")


def test_an_error_in_a_repeated_layer_is_reported_once_with_its_copies(expect_spec_error: ExpectError) -> None:
    text = """\
    netspec: 1
    model:
      type: Sequential
      layers:
        - {repeat: 40, layer: {type: Linear, in_features: 4, out_features: 4, bais: true}}
        - type: Sequential
          repeat: 3
          layer: {type: Dropout, p: -1.0}
    """
    err = expect_spec_error(text, line=5, path="model.layers.0.layer.bais", count=2)
    assert err.problems[0].message.endswith("(in copies i=0, 1, 2, 3, … of model.layers.0 (40 copies))")
    assert err.problems[1].message.endswith("(in copies i=0, 1, 2 of layer 40 (3 copies))")


def test_a_message_that_differs_per_copy_is_not_merged(expect_spec_error: ExpectError) -> None:
    text = """\
    netspec: 1
    model:
      type: Sequential
      layers:
        - {repeat: 3, layer: {type: Dropout, p: "${i + 1.5}"}}
    """
    err = expect_spec_error(text, line=5, path="model.layers.0.layer.p", count=3)
    assert [p.message.rsplit("(in ", 1)[1] for p in err.problems] == [
        f"copy i={i} of model.layers.0)" for i in range(3)
    ]


# -- parameter defaults ---------------------------------------------------------------------------

DEFAULTS = """\
netspec: 1
vars: {w: 6}
input: {shape: [4]}
blocks:
  Dense:
    params:
      width: {type: int, default: "${w}"}
      hidden: {type: int, default: "${2 * width}"}
    body:
      type: Sequential
      layers:
        - {type: Linear, out_features: "${hidden}"}
        - {type: Linear, out_features: "${width}"}
model:
  type: Sequential
  layers: {a: Dense, b: {type: Dense, width: 3}, c: {type: Dense, hidden: 5}}
"""


def test_defaults_are_substituted_from_vars_and_earlier_parameters(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(DEFAULTS, encoding="utf-8")
    model = netspec.build(spec).model
    sizes = {name: m.out_features for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert sizes == {"a.0": 12, "a.1": 6, "b.0": 6, "b.1": 3, "c.0": 5, "c.1": 6}
    assert model(torch.zeros(2, 4)).shape == (2, 6)
    overridden = netspec.build(spec, overrides={"vars.w": 2}).model
    assert [m.out_features for m in overridden.a] == [4, 2]


def test_a_default_of_the_wrong_type_is_an_error_at_the_default_once(expect_spec_error: ExpectError) -> None:
    text = DEFAULTS.replace('width: {type: int, default: "${w}"}', "width: {type: int, default: wide}")
    err = expect_spec_error(text, line=7, path="blocks.Dense.params.width.default", count=1)
    problem = err.problems[0]
    assert problem.message == "block Dense parameter 'width' is declared int, but its default is str 'wide'"
    assert "give a default of type int" in (problem.hint or "")


def test_a_wrong_default_is_reported_even_when_every_use_gives_the_parameter(expect_spec_error: ExpectError) -> None:
    text = """\
    netspec: 1
    blocks:
      Act:
        params:
          inplace: {type: bool, default: 1}
        body: {type: ReLU, inplace: "${inplace}"}
      Spare:
        params:
          p: {type: float, default: "${0.5 > 1}"}
          q: float
        body: {type: Dropout, p: "${p}"}
    model: {type: Sequential, layers: [{type: Act, inplace: true}, {type: Act, inplace: false}]}
    """
    err = expect_spec_error(text, line=5, path="blocks.Act.params.inplace.default", count=2)
    assert err.problems[0].message.endswith("is declared bool, but its default is int 1")
    second = err.problems[1]  # a block used nowhere, with a required parameter: its defaults still checked
    assert second.path == ("blocks", "Spare", "params", "p", "default")
    assert second.message.endswith("is declared float, but its default is bool false")


def test_a_default_that_does_not_evaluate_is_an_error_at_its_line(expect_spec_error: ExpectError) -> None:
    text = DEFAULTS.replace('default: "${w}"', 'default: "${ww}"')
    err = expect_spec_error(text, line=7, path="blocks.Dense.params.width.default", count=1)
    assert "'ww'" in err.problems[0].message and "did you mean 'w'?" in str(err)


def test_a_default_built_from_a_parameter_is_checked_per_instance_and_said_once(
    expect_spec_error: ExpectError,
) -> None:
    text = DEFAULTS.replace('default: "${2 * width}"', 'default: "${width / 2}"')
    err = expect_spec_error(text, line=8, path="blocks.Dense.params.hidden.default", count=2)
    messages = [p.message for p in err.problems]
    # a (width 6) and b (width 3) fall back on the default; c gives hidden itself
    assert messages == [
        "block Dense parameter 'hidden' is declared int, but its default is float 3.0 (in block Dense, used by a "
        "at model.layers.a)",
        "block Dense parameter 'hidden' is declared int, but its default is float 1.5 (in block Dense, used by b "
        "at model.layers.b)",
    ]


def test_a_default_that_is_a_reference_to_a_node_still_builds(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        """\
netspec: 1
vars: {act: {type: LeakyReLU, negative_slope: 0.2}}
blocks:
  Unit:
    params: {a: {type: node, default: "${act}"}}
    body: {type: Sequential, layers: {fc: {type: Linear, in_features: 2, out_features: 2}, act: "${a}"}}
model: Unit
""",
        encoding="utf-8",
    )
    model = netspec.build(spec).model
    assert isinstance(model.act, nn.LeakyReLU) and model.act.negative_slope == pytest.approx(0.2)


def test_a_var_error_points_at_the_var_itself(expect_spec_error: ExpectError) -> None:
    text = """\
    netspec: 1
    vars:
      a: 1
      b:
        c: 2
        d: "${nope + a}"
    model: {type: Linear, in_features: 4, out_features: "${b}"}
    """
    expect_spec_error(text, line=6, path="vars.b.d", words=("unknown name 'nope'",), count=1)


@pytest.mark.parametrize(
    ("section", "target", "what", "example"),
    [
        ("optimizer", "torch.optim.SGD", "the optimizer", "type: AdamW for torch.optim.AdamW"),
        ("scheduler", "torch.optim.lr_scheduler.StepLR", "the scheduler", "type: CosineAnnealingLR for"),
    ],
)
def test_hydra_target_in_a_training_section_names_what_type_names(
    expect_spec_error: ExpectError, section: str, target: str, what: str, example: str
) -> None:
    text = f"""\
    netspec: 1
    model: {{type: Linear, in_features: 4, out_features: 2}}
    {section}:
      _target_: {target}
      lr: 0.1
    """
    if section == "scheduler":
        text = text.replace("    scheduler:", "    optimizer: {type: SGD, lr: 0.1}\n    scheduler:")
    line = 4 if section == "optimizer" else 5
    err = expect_spec_error(text, line=line, path=f"{section}._target_", count=1)
    assert err.problems[0].message == f"'_target_' is not a netspec key: name {what} with 'type:'"
    assert example in (err.problems[0].hint or "")


def test_a_reference_may_name_a_container_kind(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        """\
netspec: 1
input: {shape: [4]}
blocks:
  Stack:
    params: {kind: {type: str, default: Sequential}}
    body: {type: "${kind}", repeat: 2, layer: {type: Linear, in_features: 4, out_features: 4}}
model: Stack
""",
        encoding="utf-8",
    )
    model = netspec.build(spec).model
    assert type(model).__mro__[1] is nn.Sequential and len(model) == 2
    assert model(torch.zeros(1, 4)).shape == (1, 4)
    listed = netspec.build(spec, overrides={"blocks.Stack.params.kind.default": "ModuleList", "input": None}).model
    assert isinstance(listed, nn.ModuleList) and not isinstance(listed, nn.Sequential)
