"""What ``validate`` accepts, ``build`` and the first forward accept (issue 9, section B).

Each mistake below used to pass ``netspec.read`` and fail only at ``build`` or at the first forward. Each is
now a ``SpecError`` at validation, at its line and spec path, saying what was expected; next to each is a
good neighbour that still validates, builds, and computes what the same layer built by torch computes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import yaml

import netspec
from netspec.compiler.shapes import output_shapes
from netspec.errors import SpecError
from tests.conftest import assert_problem

ExpectError = Callable[..., SpecError]


def forward_matches_torch(spec: Path | dict, reference: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Build ``spec``, copy its weights into ``reference`` (built by torch directly) and compare the forwards."""
    model = netspec.build(spec).model
    reference.load_state_dict(model.state_dict())
    model.eval(), reference.eval()
    with torch.no_grad():
        got, want = model(x), reference(x)
    assert got.shape == want.shape and torch.allclose(got, want)
    return got


# -- the loss section --------------------------------------------------------------------------------


def test_loss_missing_an_argument_is_caught_at_validation(expect_spec_error: ExpectError) -> None:
    text = """\
    netspec: 1
    input: {shape: [4]}
    model: {type: Linear, in_features: 4, out_features: 2}
    loss: {type: Linear, in_features: 4}
    """
    expect_spec_error(text, line=4, path="loss", words=("Linear is missing required argument(s) out_features",))


def test_loss_that_cannot_be_constructed_is_caught_at_validation(expect_spec_error: ExpectError) -> None:
    text = """\
    netspec: 1
    input: {shape: [4]}
    model: {type: Linear, in_features: 4, out_features: 2}
    loss:
      type: TransformerEncoderLayer
      d_model: 6
      nhead: 4
    """
    expect_spec_error(text, line=7, path="loss.nhead", words=("d_model=6 is not divisible by nhead=4",))


def test_a_valid_loss_validates_once_and_builds_the_same_module(write_spec: Callable[..., Path]) -> None:
    path = write_spec(
        """\
        netspec: 1
        input: {shape: [4]}
        model: {type: Linear, in_features: 4, out_features: 3}
        loss: {type: CrossEntropyLoss, label_smoothing: 0.1}
        """
    )
    spec = netspec.read(path)
    assert spec.inferred_loss is not None  # inferred at validation, not first at build
    built = netspec.build(spec)
    logits, target = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    want = nn.CrossEntropyLoss(label_smoothing=0.1)(logits, target)
    assert isinstance(built.loss, nn.CrossEntropyLoss) and torch.equal(built.loss(logits, target), want)


# -- ConvTranspose output_padding --------------------------------------------------------------------

CONV_T = """\
netspec: 1
input: {shape: [3, 8, 8]}
model:
  type: ConvTranspose2d
  in_channels: 3
  out_channels: 4
  kernel_size: 3
  stride: STRIDE
  dilation: DILATION
  output_padding: PADDING
"""


@pytest.mark.parametrize(
    ("stride", "dilation", "padding"),
    [("2", "1", "2"), ("1", "1", "1"), ("[2, 2]", "1", "[1, 2]"), ("2", "3", "3")],
)
def test_conv_transpose_output_padding_not_below_stride_or_dilation(
    expect_spec_error: ExpectError, stride: str, dilation: str, padding: str
) -> None:
    text = CONV_T.replace("STRIDE", stride).replace("DILATION", dilation).replace("PADDING", padding)
    with pytest.raises(RuntimeError, match="output padding must be smaller than either stride or dilation"):
        s, d, p = (json.loads(v) for v in (stride, dilation, padding))
        nn.ConvTranspose2d(3, 4, 3, stride=s, dilation=d, output_padding=p)(torch.randn(1, 3, 8, 8))
    expect_spec_error(
        text,
        line=10,
        path="model.output_padding",
        words=("output_padding must be smaller than stride or dilation", f"stride={stride}"),
    )


@pytest.mark.parametrize(("stride", "dilation", "padding"), [(2, 1, 1), (1, 2, 1), (3, 1, 2)])
def test_conv_transpose_with_a_valid_output_padding_matches_torch(
    write_spec: Callable[..., Path], stride: int, dilation: int, padding: int
) -> None:
    text = CONV_T.replace("STRIDE", str(stride)).replace("DILATION", str(dilation)).replace("PADDING", str(padding))
    reference = nn.ConvTranspose2d(3, 4, 3, stride=stride, dilation=dilation, output_padding=padding)
    spec = netspec.read(write_spec(text))
    out = forward_matches_torch(spec, reference, torch.randn(2, 3, 8, 8))
    assert spec.inferred.shapes[""] == tuple(out.shape)


# -- pooling windows ---------------------------------------------------------------------------------


TOO_SMALL = ("output size is too small", "larger than the input")
AVG3D = ("AvgPool3d needs an input at least as large as its kernel", "padding not counted", "kernel [3, 3, 3]")


@pytest.mark.parametrize(
    ("layer", "shape", "reference", "words"),
    [
        ("{type: AvgPool3d, kernel_size: 3}", "[3, 2, 2, 2]", nn.AvgPool3d(3), AVG3D),
        ("{type: AvgPool3d, kernel_size: 3, padding: 1}", "[3, 2, 3, 3]", nn.AvgPool3d(3, padding=1), AVG3D),
        ("{type: AvgPool1d, kernel_size: 5, padding: 1}", "[3, 2]", nn.AvgPool1d(5, padding=1), TOO_SMALL),
        ("{type: MaxPool2d, kernel_size: 3, dilation: 2}", "[3, 4, 4]", nn.MaxPool2d(3, dilation=2), TOO_SMALL),
        ("{type: AvgPool2d, kernel_size: 2, padding: 2}", "[3, 4, 4]", nn.AvgPool2d(2, padding=2), ("pad should be",)),
    ],
)
def test_a_pooling_window_larger_than_its_padded_input(
    expect_spec_error: ExpectError, layer: str, shape: str, reference: nn.Module, words: tuple[str]
) -> None:
    dims = [int(d) for d in shape.strip("[]").split(",")]
    with pytest.raises(RuntimeError):
        reference(torch.randn(2, *dims))
    text = f"netspec: 1\ninput: {{shape: {shape}}}\nmodel: {layer}\n"
    expect_spec_error(text, line=3, path="model", words=words)


@pytest.mark.parametrize(
    ("layer", "shape", "reference"),
    [
        ("{type: AvgPool3d, kernel_size: 3, padding: 1}", [3, 3, 4, 5], nn.AvgPool3d(3, padding=1)),
        ("{type: MaxPool2d, kernel_size: 2, ceil_mode: true}", [3, 5, 5], nn.MaxPool2d(2, ceil_mode=True)),
        (
            "{type: AvgPool2d, kernel_size: 3, stride: 2, padding: 1, ceil_mode: true}",
            [3, 4, 6],
            nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
        ),
        ("{type: MaxPool1d, kernel_size: 3, ceil_mode: true, stride: 2}", [2, 4], nn.MaxPool1d(3, 2, ceil_mode=True)),
    ],
)
def test_a_pooling_window_that_fits_matches_torch(
    write_spec: Callable[..., Path], layer: str, shape: list[int], reference: nn.Module
) -> None:
    spec = netspec.read(write_spec(f"netspec: 1\ninput: {{shape: {shape}}}\nmodel: {layer}\n"))
    out = forward_matches_torch(spec, reference, torch.randn(2, *shape))
    assert spec.inferred.shapes[""] == tuple(out.shape)


# -- integer and bool inputs into floating-point layers ------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "layer", "words"),
    [
        ("int64", "{type: Linear, in_features: 4, out_features: 2}", ("Linear computes in floating point", "int64")),
        ("bool", "{type: LayerNorm, normalized_shape: 4}", ("LayerNorm computes in floating point", "bool")),
        ("int64", "{type: LSTM, input_size: 4, hidden_size: 3}", ("LSTM computes in floating point",)),
        ("int64", "GELU", ("GELU computes in floating point", "an int64 tensor")),
        ("bool", "ReLU", ("ReLU does not take bool tensors",)),
        ("float32", "{type: Embedding, num_embeddings: 9, embedding_dim: 3}", ("integer indices", "float32")),
    ],
)
def test_an_input_of_the_wrong_dtype(expect_spec_error: ExpectError, dtype: str, layer: str, words: tuple[str]) -> None:
    text = f"netspec: 1\ninput: {{shape: [4], dtype: {dtype}}}\nmodel:\n  type: Sequential\n  layers:\n    - {layer}\n"
    wanted = "set input.dtype: int64" if "Embedding" in layer else "set input.dtype: float32"
    err = expect_spec_error(text, line=6, path="model.layers.0", words=(*words, "from the input", wanted))
    assert len(err.problems) == 1  # the later layers are not blamed for the first one's input


def test_a_wrong_dtype_computed_in_a_graph_names_the_statement(expect_spec_error: ExpectError) -> None:
    text = """\
    netspec: 1
    input: {shape: [4]}
    model:
      type: Graph
      inputs: [x]
      layers:
        fc: {type: Linear, in_features: 4, out_features: 2}
      forward:
        - i = x.long()
        - y = fc(i)
      outputs: y
    """
    expect_spec_error(text, line=7, path="model.layers.fc", words=("int64", "statement 'i = x.long()'"))


def test_integer_tokens_into_embedding_then_float_layers_match_torch(write_spec: Callable[..., Path]) -> None:
    path = write_spec(
        """\
        netspec: 1
        input: {shape: [5], dtype: int64}
        model:
          type: Sequential
          layers:
            - {type: Embedding, num_embeddings: 10, embedding_dim: 6}
            - {type: LayerNorm, normalized_shape: 6}
            - GELU
            - {type: Linear, out_features: 3}
        """
    )
    reference = nn.Sequential(nn.Embedding(10, 6), nn.LayerNorm(6), nn.GELU(), nn.Linear(6, 3))
    out = forward_matches_torch(path, reference, torch.randint(0, 10, (2, 5)))
    assert netspec.read(path).inferred.shapes[""] == tuple(out.shape) == (2, 5, 3)


# -- floating inputs of another dtype than the layer's parameters --------------------------------------
# Each bad case is checked against torch first (the CPU forward raises), then netspec must refuse it at the
# layer's line; each good neighbour must validate, build and compute what torch computes.

FLOAT_LAYERS = [
    ("{type: Linear, in_features: 4, out_features: 2}", lambda: nn.Linear(4, 2), [4]),
    ("{type: Conv1d, in_channels: 4, out_channels: 2, kernel_size: 1}", lambda: nn.Conv1d(4, 2, 1), [4, 3]),
    ("{type: LayerNorm, normalized_shape: 4}", lambda: nn.LayerNorm(4), [4]),
    ("{type: BatchNorm1d, num_features: 4}", lambda: nn.BatchNorm1d(4), [4, 3]),
    ("{type: GroupNorm, num_groups: 2, num_channels: 4}", lambda: nn.GroupNorm(2, 4), [4, 3]),
    ("{type: InstanceNorm1d, num_features: 4, affine: true}", lambda: nn.InstanceNorm1d(4, affine=True), [4, 3]),
    ("{type: LSTM, input_size: 4, hidden_size: 3}", lambda: nn.LSTM(4, 3), [4]),
    ("{type: TransformerEncoderLayer, d_model: 4, nhead: 2}", lambda: nn.TransformerEncoderLayer(4, 2), [3, 4]),
    ("{type: PReLU}", lambda: nn.PReLU(), [4]),
]


def _sequential(layer: str, shape: list[int], dtype: str) -> str:
    return (
        f"netspec: 1\ninput: {{shape: {shape}, dtype: {dtype}}}\nmodel:\n  type: Sequential\n  layers:\n    - {layer}\n"
    )


@pytest.mark.parametrize(("layer", "reference", "shape"), FLOAT_LAYERS)
@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
def test_a_floating_input_of_another_dtype_than_the_parameters(
    expect_spec_error: ExpectError, layer: str, reference: Callable[[], nn.Module], shape: list[int], dtype: str
) -> None:
    torch_layer = reference()
    x = torch.randn(2, *shape).to(getattr(torch, dtype))
    if dtype != "float64" and isinstance(torch_layer, (nn.LayerNorm, nn.BatchNorm1d, nn.GroupNorm, nn.InstanceNorm1d)):
        out = torch_layer(x)  # the norms' CPU kernels take float16/bfloat16 into float32 parameters
        assert out.dtype == x.dtype
        assert netspec.read(yaml.safe_load(_sequential(layer, shape, dtype))).inferred.shapes[""] == tuple(out.shape)
        return
    with pytest.raises((RuntimeError, ValueError)):
        torch_layer(x)
    name = layer.split(",")[0].removeprefix("{type: ").rstrip("}")
    words = (f"{name} expected float32 input (the layer's parameters), got {dtype}", "from the input")
    hints = ("set input.dtype: float32", f"build(spec, dtype='{dtype}')", "h = x.float()")
    err = expect_spec_error(_sequential(layer, shape, dtype), line=6, path="model.layers.0", words=(*words, *hints))
    assert len(err.problems) == 1


@pytest.mark.parametrize(("layer", "reference", "shape"), FLOAT_LAYERS)
def test_a_float64_input_into_a_float64_build_matches_torch(
    write_spec: Callable[..., Path], layer: str, reference: Callable[[], nn.Module], shape: list[int]
) -> None:
    path = write_spec(_sequential(layer, shape, "float64"))
    model = netspec.build(path, dtype="float64").model
    torch_layer = nn.Sequential(reference()).double()
    torch_layer.load_state_dict(model.state_dict())
    model.eval(), torch_layer.eval()
    x = torch.randn(2, *shape, dtype=torch.float64)
    with torch.no_grad():
        got, want = model(x), torch_layer(x)
    assert netspec.read(path, dtype="float64").inferred.shapes[""] == output_shapes(want)
    got, want = (got[0], want[0]) if isinstance(got, tuple) else (got, want)
    assert got.dtype == want.dtype == torch.float64 and torch.allclose(got, want)


def test_a_float32_input_into_a_float64_build_is_refused_at_build(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(_sequential("{type: Linear, in_features: 4, out_features: 2}", [4], "float32"))
    with pytest.raises(RuntimeError, match="mat1 and mat2 must have the same dtype"):
        nn.Linear(4, 2).double()(torch.randn(2, 4))
    assert netspec.read(spec_file).inferred.shapes[""] == (2, 2)  # float32 weights: fine
    with pytest.raises(netspec.SpecError) as info:
        netspec.build(spec_file, dtype="float64")
    words = ("Linear expected float64 input (the layer's parameters), got float32", "set input.dtype: float64")
    assert_problem(info.value, file=spec_file, line=6, path="model.layers.0", words=words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_an_input_without_dtype_follows_the_build_dtype(write_spec: Callable[..., Path]) -> None:
    path = write_spec("netspec: 1\ninput: {shape: [4]}\nmodel: {type: Linear, in_features: 4, out_features: 2}\n")
    for dtype in (torch.float64, torch.bfloat16):
        model = netspec.build(path, dtype=dtype).model
        x = torch.randn(3, 4, dtype=dtype)
        reference = nn.Linear(4, 2).to(dtype)
        reference.load_state_dict(model.state_dict())
        assert torch.equal(model(x), reference(x)) and model(x).dtype == dtype


def test_a_built_spec_rebuilt_in_another_dtype_is_checked_again(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(_sequential("{type: Linear, in_features: 4, out_features: 2}", [4], "float32"))
    spec = netspec.read(spec_file)
    assert netspec.build(spec).model[0].weight.dtype == torch.float32
    with pytest.raises(netspec.SpecError) as info:
        netspec.build(spec, dtype="bfloat16")
    assert_problem(info.value, file=spec_file, line=6, path="model.layers.0", words=("expected bfloat16 input",))


GRAPH_PROMOTES = """\
netspec: 1
input: {shape: [4]}
model:
  type: Graph
  inputs: [x]
  layers:
    fc: {type: Linear, in_features: 4, out_features: 4}
    norm: {type: LayerNorm, normalized_shape: 4}
  forward:
    - h = fc(x) + x.double()
    - y = norm(CAST)
  outputs: y
"""


def test_a_graph_statement_promotes_and_the_next_layer_is_checked_against_it(
    expect_spec_error: ExpectError, write_spec: Callable[..., Path]
) -> None:
    fc, norm = nn.Linear(4, 4), nn.LayerNorm(4)
    x = torch.randn(2, 4)
    h = fc(x) + x.double()
    assert h.dtype == torch.float64  # float32 + float64 promotes
    with pytest.raises(RuntimeError, match="mixed dtype"):
        norm(h)
    words = (
        "LayerNorm expected float32 input (the layer's parameters), got float64",
        "statement 'h = fc(x) + x.double()'",
    )
    expect_spec_error(GRAPH_PROMOTES.replace("CAST", "h"), line=8, path="model.layers.norm", words=words)
    # The good neighbour casts back: validates, builds and computes what torch computes.
    path = write_spec(GRAPH_PROMOTES.replace("CAST", "h.float()"))
    model = netspec.build(path).model
    fc.load_state_dict(model.fc.state_dict()), norm.load_state_dict(model.norm.state_dict())
    with torch.no_grad():
        assert torch.allclose(model(x), norm((fc(x) + x.double()).float()))
    assert netspec.read(path).inferred.shapes[""] == (2, 4)


def test_attention_masks_are_not_judged_as_inputs(write_spec: Callable[..., Path]) -> None:
    path = write_spec(
        """\
        netspec: 1
        input: {shape: [5, 4]}
        model:
          type: Graph
          inputs: [x]
          layers:
            attn: {type: MultiheadAttention, embed_dim: 4, num_heads: 2, batch_first: true}
          forward:
            - pad = x[..., 0] > 0
            - y, w = attn(x, x, x, key_padding_mask=pad, need_weights=False)
          outputs: y
        """
    )
    model = netspec.build(path).model.eval()
    reference = nn.MultiheadAttention(4, 2, batch_first=True).eval()
    reference.load_state_dict(model.attn.state_dict())
    x = torch.randn(2, 5, 4)
    x[:, :, 0] = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0])
    with torch.no_grad():
        want, _ = reference(x, x, x, key_padding_mask=x[..., 0] > 0, need_weights=False)
        assert torch.allclose(model(x), want)
    assert netspec.read(path).inferred.shapes[""] == (2, 5, 4)


# -- adaptive pools' output_size -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "words"),
    [
        ("{type: AdaptiveAvgPool1d, output_size: [null]}", ("AdaptiveAvgPool1d output_size must be an int", "[null]")),
        ("{type: AdaptiveMaxPool1d, output_size: [null]}", ("AdaptiveMaxPool1d output_size must be an integer",)),
        ("{type: AdaptiveAvgPool2d, output_size: null}", ("AdaptiveAvgPool2d needs an output_size, got null",)),
        ("{type: AdaptiveAvgPool2d, output_size: [2]}", ("output_size needs 2 size(s), got 1: [2]",)),
        ("{type: AdaptiveMaxPool3d, output_size: [2, 2]}", ("output_size needs 3 size(s), got 2",)),
        ("{type: AdaptiveAvgPool2d, output_size: [2, -1]}", ("output_size must not be negative",)),
    ],
)
def test_adaptive_pool_output_sizes_torch_rejects(
    expect_spec_error: ExpectError, layer: str, words: tuple[str]
) -> None:
    text = f"netspec: 1\ninput: {{shape: [3, 6, 6, 6]}}\nmodel: {layer}\n"
    expect_spec_error(text, line=3, path="model.output_size", words=words)


@pytest.mark.parametrize(
    ("layer", "shape", "reference"),
    [
        ("{type: AdaptiveAvgPool2d, output_size: [null, 3]}", [3, 8, 9], nn.AdaptiveAvgPool2d((None, 3))),
        ("{type: AdaptiveMaxPool3d, output_size: [2, null, 1]}", [2, 5, 6, 7], nn.AdaptiveMaxPool3d((2, None, 1))),
        ("{type: AdaptiveAvgPool1d, output_size: 4}", [3, 9], nn.AdaptiveAvgPool1d(4)),
    ],
)
def test_adaptive_pool_none_keeps_the_input_size_as_torch_does(
    write_spec: Callable[..., Path], layer: str, shape: list[int], reference: nn.Module
) -> None:
    spec = netspec.read(write_spec(f"netspec: 1\ninput: {{shape: {shape}}}\nmodel: {layer}\n"))
    out = forward_matches_torch(spec, reference, torch.randn(2, *shape))
    assert spec.inferred.shapes[""] == tuple(out.shape)


# -- Graph subscripts ----------------------------------------------------------------------------------

GRAPH = """\
netspec: 1
input: {shape: [4]}
model:
  type: Graph
  inputs: [x]
  layers:
    seq: {type: Sequential, layers: [ReLU, Tanh]}
    d: {type: ModuleDict, layers: {ab: Sigmoid, cd: Tanh}}
  forward:
    - STATEMENT
    - z = seq(d['cd'](x))
  outputs: [y, z]
"""


@pytest.mark.parametrize(
    ("statement", "words"),
    [
        ("y = seq[10**30](x)", ("index 10000000… is out of range for seq", "2 children", "positions -2..1")),
        ("y = seq[-3](x)", ("index -3 is out of range for seq",)),
        ("y = d['a' + 'c'](x)", ("d has no child 'ac'",)),
        ("y = d[1.5](x)", ("d is indexed by float 1.5",)),
        ("y = seq[x.shape[0]](x)", ("indexed by a value computed in forward",)),
    ],
)
def test_graph_subscripts_out_of_range_or_computed(
    expect_spec_error: ExpectError, statement: str, words: tuple[str]
) -> None:
    expect_spec_error(GRAPH.replace("STATEMENT", statement), line=10, path="model.forward.0", words=words)


@pytest.mark.parametrize(
    ("statement", "pick"),
    [
        ("y = seq[-1](x)", lambda x: torch.tanh(x)),
        ("y = d['a' + 'b'](x)", lambda x: torch.sigmoid(x)),
        ("y = seq[2 - 2](x)", lambda x: torch.relu(x)),
    ],
)
def test_graph_subscripts_folded_to_a_real_child_call_it(
    write_spec: Callable[..., Path], statement: str, pick: Callable[[torch.Tensor], torch.Tensor]
) -> None:
    model = netspec.build(write_spec(GRAPH.replace("STATEMENT", statement))).model
    x = torch.randn(2, 4)
    y, z = model(x)
    assert torch.equal(y, pick(x)) and torch.equal(z, torch.tanh(torch.relu(torch.tanh(x))))


# -- init-function arguments ---------------------------------------------------------------------------

INIT = """\
netspec: 1
input: {shape: [4]}
model: {type: Linear, in_features: 4, out_features: 2}
init:
  - RULE
"""


@pytest.mark.parametrize(
    ("rule", "path", "words"),
    [
        ("{match: weight, fn: uniform, a: 5, b: 1}", "init.0.fn", ("uniform_ expects", "from=5 > to=1")),
        ("{match: bias, fn: xavier_uniform}", "init.0.fn", ("'bias' of shape [2]", "fewer than 2 dimensions")),
        ("{match: weight, fn: normal, std: -1}", "init.0.fn", ("normal expects std >= 0.0", "found std -1")),
    ],
)
def test_init_arguments_are_checked_at_validation(
    expect_spec_error: ExpectError, rule: str, path: str, words: tuple[str]
) -> None:
    expect_spec_error(INIT.replace("RULE", rule), line=5, path=path, words=words)


def test_valid_init_arguments_fill_the_weights(write_spec: Callable[..., Path]) -> None:
    path = write_spec(INIT.replace("RULE", "{match: weight, fn: uniform, a: 2, b: 3}"))
    weight = netspec.build(path).model.weight
    assert weight.shape == (2, 4) and bool(((weight >= 2) & (weight < 3)).all())
