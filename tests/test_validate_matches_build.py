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

import netspec
from netspec.errors import SpecError

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
