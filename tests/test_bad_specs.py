"""Bad input: every mistake is a SpecError naming the file, the exact line, the spec path and what was
expected (or the closest real name), reported before anything is built or written.

Stages report together what they find; inference runs only when resolution found nothing (so one typo
does not cascade into noise).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import assert_problem, folder_state, problem_lines

import netspec
from netspec.errors import SpecError

ExpectError = Callable[..., SpecError]

SEQ = """\
netspec: 1
model:
  type: Sequential
  layers:
"""  # the first layer of a spec built on this is on line 5


# -- reading: syntax, keys, tags, limits ----------------------------------------------------------


def test_missing_netspec_key(expect_spec_error: ExpectError) -> None:
    expect_spec_error("model: ReLU\n", line=1, path="netspec", words=("missing required key 'netspec'",))


def test_netspec_version_2_is_refused(expect_spec_error: ExpectError) -> None:
    expect_spec_error("netspec: 2\nmodel: ReLU\n", line=1, path="netspec", words=("should be 1", "got 2"))


def test_unknown_top_level_key_suggests_the_real_one(expect_spec_error: ExpectError) -> None:
    expect_spec_error(
        "netspec: 1\nmodel: ReLU\nmodle: Tanh\n",
        line=3,
        path="modle",
        words=("unknown key 'modle'", "did you mean 'model'?"),
    )


def test_unknown_key_in_a_sequential_node(expect_spec_error: ExpectError) -> None:
    text = "netspec: 1\nmodel:\n  type: Sequential\n  layers: [ReLU]\n  layerz: 2\n"
    expect_spec_error(text, line=5, path="model.layerz", words=("unknown key 'layerz'", "did you mean"))


def test_duplicate_key_names_both_lines(expect_spec_error: ExpectError) -> None:
    text = SEQ + "    conv1: ReLU\n    conv1: Tanh\n"
    expect_spec_error(text, line=6, path="model.layers.conv1", words=("duplicate key 'conv1'", "first at line 5"))


def test_non_string_key(expect_spec_error: ExpectError) -> None:
    text = SEQ + "    1: ReLU\n"
    expect_spec_error(text, line=5, path="model.layers", words=("mapping keys must be strings", "int 1", "quote it"))


def test_python_object_tag_is_refused_not_executed(expect_spec_error: ExpectError, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"netspec: 1\nmodel: !!python/object/apply:os.system ['touch {marker}']\n"
    expect_spec_error(text, line=2, path="model", words=("unsupported tag !!python/object", "plain YAML only"))
    assert not marker.exists()


def test_yaml_1_2_numbers_1e_3_is_a_float_and_yes_a_string(write_spec: Callable[..., Path]) -> None:
    path = write_spec(
        """\
        netspec: 1
        vars: {lr: 1e-3, flag: yes, n: 1_000}
        model: {type: Linear, in_features: 2, out_features: 3}
        optimizer: {type: SGD, lr: 1e-3}
        """
    )
    built = netspec.build(path)
    variables = built.spec.to_dict()["vars"]
    assert variables == {"lr": 0.001, "flag": "yes", "n": "1_000"}
    assert isinstance(variables["lr"], float)
    assert built.optimizer is not None and built.optimizer.param_groups[0]["lr"] == 0.001


def test_json_trailing_comma(expect_spec_error: ExpectError) -> None:
    text = '{\n  "netspec": 1,\n  "model": {"type": "ReLU",}\n}\n'
    expect_spec_error(text, name="spec.json", line=3, path="model", words=("trailing comma",))


def test_json_nan_is_refused(expect_spec_error: ExpectError) -> None:
    text = '{\n  "netspec": 1,\n  "model": {"type": "Dropout", "p": NaN}\n}\n'
    expect_spec_error(text, name="spec.json", line=3, path="model.p", words=("NaN is not allowed",))


def test_alias_bomb_fails_fast(expect_spec_error: ExpectError) -> None:
    rows = ["netspec: 1", "a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for k, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[k]
        rows.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    rows.append("model: ReLU")
    err = expect_spec_error("\n".join(rows) + "\n", line=8, path="g.0", words=("alias bomb",))
    assert len(err.problems) == 1


@pytest.mark.parametrize("name", ["spec.yaml", "spec.json"])
def test_100000_nested_brackets_are_a_spec_error_not_a_recursion_error(
    expect_spec_error: ExpectError, name: str
) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    if name.endswith(".json"):
        text, line = '{"netspec": 1,\n "model": ' + deep + "}\n", 2
    else:
        text, line = "netspec: 1\nmodel: " + deep + "\n", 2
    err = expect_spec_error(text, name=name, line=line, path="model.0.0.0*", words=("max nesting depth",))
    assert len(str(err)) < 5_000, "the quoted line and path must stay readable"


# -- layers: types, arguments, values -------------------------------------------------------------


def test_unknown_layer_type_suggests_conv2d(expect_spec_error: ExpectError) -> None:
    text = SEQ + "    conv1: {type: Conv2D, in_channels: 1, out_channels: 6, kernel_size: 5}\n"
    expect_spec_error(
        text, line=5, path="model.layers.conv1.type", words=("unknown layer type 'Conv2D'", "did you mean 'Conv2d'")
    )


def test_unknown_argument_suggests_kernel_size(expect_spec_error: ExpectError) -> None:
    text = SEQ + "    conv1: {type: Conv2d, in_channels: 1, out_channels: 6, kernel_sise: 5}\n"
    err = expect_spec_error(
        text,
        line=5,
        path="model.layers.conv1.kernel_sise",
        words=("Conv2d has no argument 'kernel_sise'", "did you mean 'kernel_size'?"),
    )
    assert err.problems[0].location is not None and err.problems[0].location.column == 60  # at the key


def test_bool_is_not_an_int(expect_spec_error: ExpectError) -> None:
    text = SEQ + "    conv1: {type: Conv2d, in_channels: true, out_channels: 6, kernel_size: 5}\n"
    expect_spec_error(text, line=5, path="model.layers.conv1.in_channels", words=("expected int", "got bool true"))


def test_string_is_not_an_int(expect_spec_error: ExpectError) -> None:
    text = SEQ + "    conv1: {type: Conv2d, in_channels: 1, out_channels: six, kernel_size: 5}\n"
    expect_spec_error(text, line=5, path="model.layers.conv1.out_channels", words=("expected int", "got str 'six'"))


def test_float_is_not_an_int(expect_spec_error: ExpectError) -> None:
    text = "netspec: 1\nmodel:\n  {type: Linear, in_features: 3, out_features: 4.0}\n"
    expect_spec_error(text, line=3, path="model.out_features", words=("expected int", "got float 4.0"))


def test_kernel_size_list_of_wrong_length(expect_spec_error: ExpectError) -> None:
    text = SEQ + "    conv1: {type: Conv2d, in_channels: 1, out_channels: 6, kernel_size: [3, 3, 3]}\n"
    expect_spec_error(
        text,
        line=5,
        path="model.layers.conv1.kernel_size",
        words=("expected int or [int, int]", "got list [3, 3, 3]"),
    )


def test_literal_argument_lists_the_choices(expect_spec_error: ExpectError) -> None:
    text = SEQ + "    c: {type: Conv2d, in_channels: 3, out_channels: 4, kernel_size: 3, padding_mode: zerosx}\n"
    expect_spec_error(
        text, line=5, path="model.layers.c.padding_mode", words=("expected one of 'zeros'", "got str 'zerosx'")
    )


def test_layer_type_must_be_a_string(expect_spec_error: ExpectError) -> None:
    expect_spec_error("netspec: 1\nmodel: {type: 3}\n", line=2, path="model.type", words=("string", "got int 3"))


def test_dropout_probability_above_one(expect_spec_error: ExpectError) -> None:
    text = SEQ + "    drop: {type: Dropout, p: 1.5}\n"
    expect_spec_error(text, line=5, path="model.layers.drop.p", words=("must be in [0, 1]", "got 1.5"))


def test_groupnorm_groups_must_divide_channels(expect_spec_error: ExpectError) -> None:
    text = SEQ + "    gn: {type: GroupNorm, num_groups: 3, num_channels: 16}\n"
    expect_spec_error(
        text,
        line=5,
        path="model.layers.gn.num_groups",
        words=("num_groups=3 does not divide num_channels=16", "try num_groups: 2"),
    )


def test_groupnorm_groups_checked_against_inferred_channels(expect_spec_error: ExpectError) -> None:
    text = "netspec: 1\ninput: {shape: [16, 4, 4]}\nmodel:\n  type: Sequential\n  layers:\n"
    text += "    gn: {type: GroupNorm, num_groups: 3}\n"
    expect_spec_error(
        text, line=6, path="model.layers.gn.num_groups", words=("num_groups=3 does not divide num_channels=16",)
    )


def test_layernorm_shape_must_match_trailing_dims(expect_spec_error: ExpectError) -> None:
    text = "netspec: 1\ninput: {shape: [10, 16]}\nmodel:\n  type: Sequential\n  layers:\n"
    text += "    ln: {type: LayerNorm, normalized_shape: [12]}\n"
    expect_spec_error(
        text,
        line=6,
        path="model.layers.ln.normalized_shape",
        words=("normalized_shape [12] does not match the trailing dims", "[B, 10, 16]"),
    )


def test_padding_same_needs_stride_1(expect_spec_error: ExpectError) -> None:
    text = SEQ + "    conv: {type: Conv2d, in_channels: 3, out_channels: 8, kernel_size: 3, padding: same, stride: 2}\n"
    expect_spec_error(
        text, line=5, path="model.layers.conv.padding", words=("padding='same' needs stride 1", "got stride 2")
    )


@pytest.mark.parametrize("value", [-8, 0])
def test_out_channels_must_be_positive(expect_spec_error: ExpectError, value: int) -> None:
    text = SEQ + f"    conv: {{type: Conv2d, in_channels: 3, out_channels: {value}, kernel_size: 3}}\n"
    expect_spec_error(text, line=5, path="model.layers.conv.out_channels", words=(f"must be positive, got {value}",))


def test_kernel_size_entries_must_be_positive(expect_spec_error: ExpectError) -> None:
    text = SEQ + "    conv: {type: Conv2d, in_channels: 3, out_channels: 4, kernel_size: [3, 0]}\n"
    expect_spec_error(text, line=5, path="model.layers.conv.kernel_size", words=("must be positive", "(3, 0)"))


def test_conv_groups_must_divide_channels(expect_spec_error: ExpectError) -> None:
    text = SEQ + "    conv: {type: Conv2d, in_channels: 3, out_channels: 4, kernel_size: 3, groups: 2}\n"
    expect_spec_error(
        text, line=5, path="model.layers.conv.in_channels", words=("in_channels=3 is not divisible by groups=2",)
    )


def test_multihead_attention_heads_must_divide_embed_dim(expect_spec_error: ExpectError) -> None:
    text = SEQ + "    attn: {type: MultiheadAttention, embed_dim: 10, num_heads: 3}\n"
    expect_spec_error(
        text, line=5, path="model.layers.attn.num_heads", words=("embed_dim=10 is not divisible by num_heads=3",)
    )


def test_multihead_attention_embed_dim_must_be_an_int(expect_spec_error: ExpectError) -> None:
    # torch leaves embed_dim unannotated; the catalogue still types it, so a float fails before building.
    text = SEQ + "    attn: {type: MultiheadAttention, embed_dim: 8.0, num_heads: 2}\n"
    expect_spec_error(text, line=5, path="model.layers.attn.embed_dim", words=("expected int", "got float 8.0"))


def test_missing_required_argument_without_input_shape_hints_at_it(expect_spec_error: ExpectError) -> None:
    text = SEQ + "    fc: {type: Linear, out_features: 4}\n"
    expect_spec_error(
        text,
        line=5,
        path="model.layers.fc",
        words=("Linear is missing required argument(s) in_features", "give input.shape"),
    )


def test_constructor_failure_is_located(expect_spec_error: ExpectError) -> None:
    text = SEQ + "    pool: {type: FractionalMaxPool2d, kernel_size: 3}\n"
    expect_spec_error(
        text, line=5, path="model.layers.pool", words=("cannot be constructed", "output size, or a pooling ratio")
    )


# -- shapes ---------------------------------------------------------------------------------------

LENET_28 = """\
netspec: 1
input: {shape: [1, 28, 28]}
model:
  type: Sequential
  layers:
    features:
      type: Sequential
      layers:
        conv1: {type: Conv2d, in_channels: 1, out_channels: 6, kernel_size: 5}
        relu1: ReLU
        pool1: {type: MaxPool2d, kernel_size: 2}
        conv2: {type: Conv2d, in_channels: 6, out_channels: 16, kernel_size: 5}
        relu2: ReLU
        pool2: {type: MaxPool2d, kernel_size: 2}
    flatten: Flatten
    classifier:
      type: Sequential
      layers:
        fc1: {type: Linear, in_features: 400, out_features: 120}
        relu3: ReLU
        fc2: {type: Linear, in_features: 120, out_features: 84}
"""


def test_linear_in_features_mismatch_names_both_layers_and_sizes(expect_spec_error: ExpectError) -> None:
    err = expect_spec_error(
        LENET_28,
        line=19,
        path="model.layers.classifier.layers.fc1.in_features",
        words=(
            "classifier.fc1 expects 400 input features but features.pool2 produces 16×4×4=256",
            "set in_features: 256",
        ),
        count=1,
    )
    assert err.problems[0].location is not None and err.problems[0].location.column == 29


def test_conv_in_channels_mismatch_names_the_producing_layer(expect_spec_error: ExpectError) -> None:
    text = "netspec: 1\ninput: {shape: [3, 8, 8]}\nmodel:\n  type: Sequential\n  layers:\n"
    text += "    conv1: {type: Conv2d, out_channels: 6, kernel_size: 3}\n"
    text += "    conv2: {type: Conv2d, in_channels: 8, out_channels: 16, kernel_size: 3}\n"
    expect_spec_error(
        text,
        line=7,
        path="model.layers.conv2.in_channels",
        words=("conv2 expects 8 input channels but conv1 produces 6",),
    )


def test_graph_size_mismatch_names_the_producing_child(expect_spec_error: ExpectError) -> None:
    text = """\
    netspec: 1
    input: {shape: [4]}
    model:
      type: Graph
      inputs: [x]
      layers:
        fc: {type: Linear, out_features: 4}
        fc2: {type: Linear, in_features: 5, out_features: 4}
      forward:
        - y = fc2(fc(x))
      outputs: y
    """
    expect_spec_error(
        text, line=8, path="model.layers.fc2.in_features", words=("fc2 expects 5 input features but fc produces 4",)
    )


def test_modulelist_in_a_sequential_with_input_shape(expect_spec_error: ExpectError) -> None:
    text = "netspec: 1\ninput: {shape: [4]}\nmodel:\n  type: Sequential\n  layers:\n"
    text += "    fc: {type: Linear, out_features: 4}\n"
    text += "    blocks: {type: ModuleList, layers: [ReLU, ReLU]}\n"
    expect_spec_error(text, line=7, path="model.layers.blocks", words=("ModuleList has no forward", "Graph"))


def test_input_shape_must_be_positive(expect_spec_error: ExpectError) -> None:
    text = "netspec: 1\ninput: {shape: [3, 0]}\nmodel: ReLU\n"
    expect_spec_error(text, line=2, path="input.shape", words=("positive integers", "[3, 0]"))


# -- vars and expressions -------------------------------------------------------------------------


def test_unknown_var_suggests_the_real_one(expect_spec_error: ExpectError) -> None:
    text = "netspec: 1\nvars: {width: 8}\n" + SEQ.split("\n", 1)[1]
    text += '    fc: {type: Linear, in_features: 4, out_features: "${widht}"}\n'
    expect_spec_error(
        text, line=6, path="model.layers.fc.out_features", words=("unknown name 'widht'", "did you mean 'width'?")
    )


def test_unknown_var_is_reported_once_without_cascading(expect_spec_error: ExpectError) -> None:
    text = "netspec: 1\nvars: {width: 8}\n" + SEQ.split("\n", 1)[1]
    text += '    fc: {type: Linear, in_features: 4, out_features: "${widht}"}\n'
    expect_spec_error(text, line=6, path="model.layers.fc.out_features", words=("unknown name 'widht'",), count=1)


def test_var_cycle(expect_spec_error: ExpectError) -> None:
    text = "netspec: 1\nvars: {a: '${b}', b: '${a}'}\nmodel: {type: Linear, in_features: 4, out_features: '${a}'}\n"
    expect_spec_error(text, line=2, path="vars.a", words=("cycle", "a -> b -> a"))


def test_expression_cannot_import(expect_spec_error: ExpectError) -> None:
    text = SEQ + """    fc: {type: Linear, in_features: 4, out_features: "${__import__('os')}"}\n"""
    expect_spec_error(text, line=5, path="model.layers.fc.out_features", words=("'__import__' is not allowed",))


# -- containers and child names -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repeat", "words"),
    [
        ("three", ("expected an int", "got str 'three'")),
        ("2.5", ("expected an int", "got float 2.5")),
        ("-2", ("repeat must be an integer >= 1", "got -2")),
        ("0", ("repeat must be an integer >= 1", "got 0")),
    ],
)
def test_repeat_must_be_a_positive_int(expect_spec_error: ExpectError, repeat: str, words: tuple[str, ...]) -> None:
    text = f"netspec: 1\nmodel:\n  type: ModuleList\n  repeat: {repeat}\n  layer: {{type: Tanh}}\n"
    expect_spec_error(text, line=4, path="model.repeat", words=words)


def test_sequential_with_both_layers_and_repeat(expect_spec_error: ExpectError) -> None:
    text = "netspec: 1\nmodel:\n  type: Sequential\n  layers: [ReLU]\n  repeat: 2\n  layer: ReLU\n"
    expect_spec_error(text, line=2, path="model", words=("either 'layers' or 'repeat'",))


def test_repeat_without_layer(expect_spec_error: ExpectError) -> None:
    text = "netspec: 1\nmodel:\n  type: ModuleList\n  repeat: 2\n"
    expect_spec_error(text, line=2, path="model", words=("missing 'layer'",))


def test_child_name_with_a_dot(expect_spec_error: ExpectError) -> None:
    expect_spec_error(
        SEQ + "    conv.1: ReLU\n", line=5, path="model.layers.conv.1", words=("contains '.'", "use 'conv_1'")
    )


def test_parameter_dict_key_with_a_dot_or_a_module_attribute(expect_spec_error: ExpectError, tmp_path: Path) -> None:
    """nn.ParameterDict refuses such keys with a KeyError at build: they are refused at validation, at the key."""
    text = """\
    netspec: 1
    model:
      type: ParameterDict
      parameters:
        scale: {shape: [3]}
        w.b: {shape: [3]}
        train: {shape: [2]}
    """
    err = expect_spec_error(text, line=6, path="model.parameters.w.b", words=("contains '.'", "use 'w_b'"), count=2)
    assert_problem(
        err,
        file=tmp_path / "spec.yaml",
        line=7,
        path="model.parameters.train",
        words=("clashes with the nn.Module attribute",),
    )


def test_child_name_forward_clashes_with_nn_module(expect_spec_error: ExpectError) -> None:
    expect_spec_error(
        SEQ + "    forward: ReLU\n",
        line=5,
        path="model.layers.forward",
        words=("clashes with the nn.Module attribute",),
    )


def test_empty_child_name(expect_spec_error: ExpectError) -> None:
    expect_spec_error(SEQ + '    "": ReLU\n', line=5, path="model.layers.", words=("non-empty",))


@pytest.mark.parametrize("name", ["_modules", "_parameters"])
def test_child_name_clashing_with_an_instance_attribute(expect_spec_error: ExpectError, name: str) -> None:
    expect_spec_error(SEQ + f"    {name}: ReLU\n", line=5, path=f"model.layers.{name}", words=("clashes",))


# -- several problems at once ---------------------------------------------------------------------


def test_several_problems_in_one_file_are_reported_together(expect_spec_error: ExpectError, tmp_path: Path) -> None:
    text = SEQ + (
        "    conv1: {type: Conv2D, in_channels: 1, out_channels: 6, kernel_size: 5}\n"
        "    drop: {type: Dropout, p: 1.5}\n"
        "    conv2: {type: Conv2d, in_channels: 1, out_channels: 6, kernel_sise: 5}\n"
        "    gn: {type: GroupNorm, num_groups: 3, num_channels: 16}\n"
    )
    err = expect_spec_error(text, line=5, path="model.layers.conv1.type", words=("did you mean 'Conv2d'",), count=4)
    assert str(err).startswith("4 problems in spec:")
    assert_problem(err, file=tmp_path / "spec.yaml", line=6, path="model.layers.drop.p")
    assert_problem(err, file=tmp_path / "spec.yaml", line=7, path="model.layers.conv2.kernel_sise")
    assert_problem(err, file=tmp_path / "spec.yaml", line=8, path="model.layers.gn.num_groups")
    assert [int(line.split(":")[1]) for line in problem_lines(err)] == [5, 6, 7, 8]


def test_inference_problems_in_separate_branches_are_reported_together(
    expect_spec_error: ExpectError, tmp_path: Path
) -> None:
    text = "netspec: 1\nmodel:\n  type: ModuleDict\n  layers:\n"
    text += "    a: {type: Linear, out_features: 4}\n"
    text += "    b: {type: Conv2d, out_channels: 4, kernel_size: 3}\n"
    err = expect_spec_error(text, line=5, path="model.layers.a", words=("in_features",), count=2)
    assert_problem(err, file=tmp_path / "spec.yaml", line=6, path="model.layers.b", words=("in_channels",))


def test_inference_waits_until_resolution_found_nothing(expect_spec_error: ExpectError) -> None:
    # conv1's in_channels is wrong for the input too, but only the resolution problem is reported.
    text = "netspec: 1\ninput: {shape: [3, 8, 8]}\nmodel:\n  type: Sequential\n  layers:\n"
    text += "    conv1: {type: Conv2d, in_channels: 4, out_channels: 6, kernel_size: 3}\n"
    text += "    act: {type: ReLU, inplase: true}\n"
    expect_spec_error(text, line=7, path="model.layers.act.inplase", words=("did you mean 'inplace'?",), count=1)


# -- overrides ------------------------------------------------------------------------------------


def test_override_of_a_missing_list_index(expect_spec_error: ExpectError) -> None:
    text = "netspec: 1\nmodel:\n  type: Sequential\n  layers: [ReLU, Tanh]\n"
    expect_spec_error(
        text,
        line=4,
        path="model.layers",
        words=("'5' is not an index of this list of 2 items",),
        overrides={"model.layers.5.type": "ReLU"},
    )


def test_override_with_a_value_of_the_wrong_type(expect_spec_error: ExpectError) -> None:
    text = "netspec: 1\nvars: {width: 8}\nmodel: {type: Linear, in_features: 4, out_features: '${width}'}\n"
    expect_spec_error(
        text,
        line=3,
        path="model.out_features",
        words=("expected int", "got str 'wide'"),
        overrides={"vars.width": "wide"},
        build=True,
    )


def test_override_of_seed_with_a_string_names_the_override(write_spec: Callable[..., Path]) -> None:
    path = write_spec("netspec: 1\nseed: 0\nmodel: ReLU\n")
    with pytest.raises(SpecError) as info:
        netspec.read(path, {"seed": "abc"})
    (line,) = problem_lines(info.value)
    assert line.startswith(f"{path} (--set seed='abc'):1:1: seed: ")
    assert "valid integer" in line and "'abc'" in line


def test_bad_override_value_names_the_spec_file(cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    spec = tmp_path / "named.yaml"
    spec.write_text("netspec: 1\nseed: 0\nmodel: ReLU\n")
    code, _, err = cli("validate", spec, "--set", "seed=abc")
    assert code == 1
    assert "seed" in err and "'abc'" in err
    assert str(spec) in err


def test_cli_set_with_a_bad_value_type(cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("netspec: 1\nvars: {width: 8}\nmodel: {type: Linear, in_features: 4, out_features: '${width}'}\n")
    before = folder_state(tmp_path)
    code, out, err = cli("build", spec, "--set", "vars.width=wide", "-o", tmp_path / "out.pt")
    assert code == 1 and out == ""
    assert f"{spec}:3:" in err and "model.out_features" in err and "got str 'wide'" in err
    assert folder_state(tmp_path) == before


def test_seed_out_of_range(expect_spec_error: ExpectError) -> None:
    expect_spec_error(
        "netspec: 1\nseed: 18446744073709551616\nmodel: ReLU\n", line=2, path="seed", words=("seed",), build=True
    )


# -- through the CLI: exit 1, messages, nothing written -------------------------------------------


def test_cli_build_of_an_invalid_spec_writes_nothing(cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    spec = tmp_path / "lenet28.yaml"
    spec.write_text(LENET_28)
    before = folder_state(tmp_path)
    code, out, err = cli("build", spec, "-o", tmp_path / "out.pt")
    assert code == 1 and out == ""
    assert f"{spec}:19:29: model.layers.classifier.layers.fc1.in_features: " in err
    assert "features.pool2 produces 16×4×4=256" in err
    assert folder_state(tmp_path) == before
    assert not (tmp_path / "out.pt").exists()


def test_cli_validate_reports_every_invalid_file(cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("netspec: 1\nmodel: ReLU\n")
    bad1 = tmp_path / "bad1.yaml"
    bad1.write_text(SEQ + "    drop: {type: Dropout, p: 1.5}\n")
    bad2 = tmp_path / "bad2.json"
    bad2.write_text(json.dumps({"netspec": 1, "model": {"type": "Conv2D"}}, indent=1))
    code, out, err = cli("validate", bad1, good, bad2)
    assert code == 1
    assert out == f"{good}: ok\n"
    assert f"{bad1}:5:27: model.layers.drop.p: " in err
    assert f"{bad2}:4:" in err and "did you mean 'Conv2d'" in err


@pytest.mark.parametrize("spec", [None, [1, 2], 3])
def test_a_spec_that_is_not_a_path_or_mapping_is_a_spec_error(spec: object) -> None:
    with pytest.raises(netspec.SpecError, match=r"a spec is a file path, a mapping or a netspec\.Spec"):
        netspec.build(spec)  # type: ignore[arg-type]


def test_absurd_input_shapes_are_refused_before_anything_is_allocated(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("netspec: 1\ninput: {shape: [1000000000000, 1000000000000]}\nmodel: ReLU\n", encoding="utf-8")
    with pytest.raises(netspec.SpecError, match=r"huge.yaml:2:9: input.shape: .* elements per sample; the limit is"):
        netspec.read(path)


def test_training_problems_are_reported_with_model_problems(tmp_path: Path) -> None:
    path = tmp_path / "both.yaml"
    path.write_text(
        "netspec: 1\nmodel: {type: Linaer, in_features: 2, out_features: 2}\noptimizer: {type: SGDD, lr: 0.1}\n",
        encoding="utf-8",
    )
    with pytest.raises(netspec.SpecError) as err:
        netspec.read(path)
    text = str(err.value)
    assert "2 problems in spec" in text
    assert "both.yaml:2:" in text and "did you mean 'Linear'" in text
    assert "both.yaml:3:" in text and "did you mean 'SGD'" in text


def test_override_of_an_unknown_var_names_the_closest(tmp_path: Path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text("netspec: 1\nvars: {width: 8}\nmodel: {type: Linear, in_features: 4, out_features: '${width}'}\n")
    with pytest.raises(netspec.SpecError) as err:
        netspec.read(path, {"vars.widht": 3})
    assert "v.yaml:2:1: vars: --set vars.widht: the spec has no var 'widht'" in str(err.value)
    assert "did you mean 'width'?" in str(err.value)


@pytest.mark.parametrize(
    ("loss", "wanted"),
    [
        ("{type: CrossEntropyLoss, reduction: avg}", "reduction must be one of 'none', 'mean', 'sum', got 'avg'"),
        ("{type: CrossEntropyLoss, label_smoothing: 2.0}", "label_smoothing is a probability and must be in [0, 1]"),
        ("{type: MSELoss, reduction: summ}", "did you mean 'sum'?"),
    ],
)
def test_loss_arguments_torch_checks_only_when_called(tmp_path: Path, loss: str, wanted: str) -> None:
    path = tmp_path / "loss.yaml"
    path.write_text(f"netspec: 1\nmodel: ReLU\nloss: {loss}\n", encoding="utf-8")
    with pytest.raises(netspec.SpecError) as err:
        netspec.read(path)
    assert "loss.yaml:3:" in str(err.value) and wanted in str(err.value)
