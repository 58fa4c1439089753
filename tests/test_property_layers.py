"""Property: for a catalogue layer with plausible arguments and input, netspec's verdict is torch's.

Hypothesis draws a layer (Linear, Conv1/2/3d, ConvTranspose1/2/3d, max/avg/adaptive pools, the norms,
activations, Embedding, RNN/LSTM/GRU, MultiheadAttention, Flatten/Unflatten, Dropout, ...), its
arguments and an input shape and dtype. The same layer is built by torch directly (not by netspec)
and run forward on CPU, in training mode as the first training step runs it. Then:

- torch's construction or forward fails  <=>  ``netspec.read`` raises ``SpecError``;
- when both accept, netspec's inferred output shape (nested like the output) is the forward's.

Anything but a ``SpecError`` from netspec fails the test. The seed is fixed (``derandomize=True``);
``NETSPEC_FUZZ_EXAMPLES=N`` multiplies the example counts for a longer local run.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netspec
from netspec.compiler.shapes import output_shapes
from netspec.errors import SpecError

SCALE = max(1, int(os.environ.get("NETSPEC_FUZZ_EXAMPLES", "1")))
BATCH = 2  # netspec's probe batch; torch gets the same


def examples(n: int) -> Any:
    return settings(
        max_examples=n * SCALE,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


class Case:
    """One drawn case: the layer's catalogue name and arguments, the per-sample input shape and dtype."""

    def __init__(self, name: str, args: dict[str, Any], shape: list[int], dtype: str = "float32") -> None:
        self.name, self.args, self.shape, self.dtype = name, args, shape, dtype

    def __repr__(self) -> str:
        return f"Case({self.name}, {self.args}, input {self.shape} {self.dtype})"


def torch_input(case: Case, high: int = 5) -> torch.Tensor:
    shape = (BATCH, *case.shape)
    if case.dtype == "float32":
        return torch.randn(shape)
    if case.dtype == "bool":
        return torch.rand(shape) > 0.5
    return torch.randint(0, high, shape)


def torch_verdict(case: Case, module: Any = None) -> tuple[bool, Any]:
    """(accepted, output shapes) of the layer built by torch and run forward on CPU."""
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in case.args.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            layer = getattr(nn, case.name)(**args) if module is None else module(args)
            high = getattr(layer, "num_embeddings", 5)
            x = torch_input(case, high)
            with torch.no_grad():
                out = layer(x, x, x) if case.name == "MultiheadAttention" else layer(x)
        except Exception:  # noqa: BLE001 - any refusal by torch is the verdict being compared
            return False, None
    return True, output_shapes(out)


def netspec_verdict(case: Case) -> tuple[bool, Any]:
    """(accepted, inferred output shapes) from ``netspec.read``; the SpecError's text when it refuses."""
    model: dict[str, Any] = {"type": case.name, **case.args}
    if case.name == "MultiheadAttention":  # three inputs and two outputs: called from a Graph
        model = {
            "type": "Graph",
            "inputs": ["x"],
            "layers": {"attn": model},
            "forward": ["y, w = attn(x, x, x)"],
            "outputs": ["y", "w"],
        }
    spec = {"netspec": 1, "input": {"shape": case.shape, "dtype": case.dtype}, "model": model}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inferred = netspec.read(spec).inferred
    except SpecError as err:
        return False, str(err)
    return True, inferred.shapes[""]


def stricter_on_purpose(case: Case, message: str) -> bool:
    """Where netspec refuses what torch runs, on purpose (docs/testing.md): a GroupNorm without affine
    parameters declared for other channels than it gets runs in torch, but the spec says something else."""
    return case.name == "GroupNorm" and not case.args.get("affine", True) and "channels but the input" in message


def agree(case: Case) -> None:
    want_ok, want = torch_verdict(case)
    got_ok, got = netspec_verdict(case)
    if want_ok and not got_ok and stricter_on_purpose(case, got):
        return
    if want_ok != got_ok:
        detail = f": netspec infers {got}" if got_ok else f":\n{got}"
        pytest.fail(f"torch {'accepts' if want_ok else 'rejects'} {case}, netspec does not{detail}")
    if want_ok:
        assert got == want, f"{case}: netspec infers {got}, torch computes {want}"


# -- strategies ------------------------------------------------------------------------------------

small = st.integers(1, 6)
dtypes = st.sampled_from(["float32"] * 8 + ["int64", "bool"])


def near(value: int) -> st.SearchStrategy[int]:
    """Mostly ``value`` (what fits), sometimes a neighbour (what does not)."""
    return st.one_of(st.just(value), st.just(value), st.just(value), st.integers(max(1, value - 2), value + 2))


def per_dim(n: int, values: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    return st.one_of(values, st.lists(values, min_size=n, max_size=n))


@st.composite
def linear(draw: Any) -> Case:
    features = draw(small)
    shape = [*draw(st.lists(small, max_size=2)), draw(near(features))]
    args = {"in_features": features, "out_features": draw(small), "bias": draw(st.booleans())}
    return Case("Linear", args, shape, draw(dtypes))


@st.composite
def conv(draw: Any) -> Case:
    n = draw(st.integers(1, 3))
    transpose = draw(st.booleans())
    groups = draw(st.sampled_from([1, 1, 1, 2]))
    in_channels = groups * draw(st.integers(1, 3))
    args: dict[str, Any] = {
        "in_channels": in_channels,
        "out_channels": groups * draw(st.integers(1, 3)),
        "kernel_size": draw(per_dim(n, st.integers(1, 4))),
        "stride": draw(per_dim(n, st.integers(1, 3))),
        "dilation": draw(per_dim(n, st.integers(1, 2))),
        "groups": groups,
        "bias": draw(st.booleans()),
    }
    if transpose:
        args["padding"] = draw(per_dim(n, st.integers(0, 2)))
        args["output_padding"] = draw(per_dim(n, st.integers(0, 2)))
    else:
        args["padding"] = draw(st.one_of(per_dim(n, st.integers(0, 2)), st.sampled_from(["same", "valid"])))
        if args["padding"] == "same":
            args["stride"] = draw(st.sampled_from([1, args["stride"]]))
    spatial = draw(st.lists(st.integers(1, 9), min_size=n, max_size=n))
    name = f"Conv{'Transpose' if transpose else ''}{n}d"
    return Case(name, args, [draw(near(in_channels)), *spatial], draw(dtypes))


@st.composite
def pool(draw: Any) -> Case:
    n = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["Max", "Avg"]))
    args: dict[str, Any] = {
        "kernel_size": draw(per_dim(n, st.integers(1, 4))),
        "stride": draw(st.one_of(st.none(), per_dim(n, st.integers(1, 3)))),
        "padding": draw(per_dim(n, st.integers(0, 2))),
        "ceil_mode": draw(st.booleans()),
    }
    if kind == "Max":
        args["dilation"] = draw(per_dim(n, st.integers(1, 2)))
    else:
        args["count_include_pad"] = draw(st.booleans())
    spatial = draw(st.lists(st.integers(1, 9), min_size=n, max_size=n))
    return Case(f"{kind}Pool{n}d", args, [draw(small), *spatial], draw(dtypes))


@st.composite
def adaptive(draw: Any) -> Case:
    n = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["Max", "Avg"]))
    size = st.one_of(st.integers(0, 5), st.none()) if n > 1 else st.integers(0, 5)
    output_size = draw(st.one_of(st.integers(1, 5), st.lists(size, min_size=n, max_size=n)))
    spatial = draw(st.lists(st.integers(1, 9), min_size=n, max_size=n))
    return Case(f"Adaptive{kind}Pool{n}d", {"output_size": output_size}, [draw(small), *spatial], draw(dtypes))


@st.composite
def norm(draw: Any) -> Case:
    kind = draw(st.sampled_from(["BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "RMSNorm"]))
    channels = draw(small)
    if kind.startswith("BatchNorm"):
        rank = 1 if kind == "BatchNorm2d" else draw(st.integers(0, 1))
        spatial = draw(st.lists(st.integers(1, 5), min_size=rank + (kind == "BatchNorm2d"), max_size=rank + 1))
        args: dict[str, Any] = {"num_features": channels, "affine": draw(st.booleans())}
        return Case(kind, args, [draw(near(channels)), *spatial], draw(dtypes))
    if kind == "GroupNorm":
        groups = draw(st.integers(1, 3))
        channels = groups * draw(st.integers(1, 3))
        args = {"num_groups": groups, "num_channels": channels, "affine": draw(st.booleans())}
        return Case(kind, args, [draw(near(channels)), *draw(st.lists(small, max_size=2))], draw(dtypes))
    trailing = draw(st.lists(small, min_size=1, max_size=2))
    shape = [*draw(st.lists(small, max_size=2)), *trailing]
    if draw(st.integers(0, 4)) == 0:
        shape[-1] += 1  # normalized_shape no longer matches
    normalized = trailing if len(trailing) > 1 or draw(st.booleans()) else trailing[0]
    args = {"normalized_shape": normalized}
    if kind == "LayerNorm":
        args["elementwise_affine"] = draw(st.booleans())
    return Case(kind, args, shape, draw(dtypes))


ACTIVATIONS = ["ReLU", "GELU", "Tanh", "SiLU", "Sigmoid", "LeakyReLU", "ELU", "Hardswish", "Mish", "Identity"]


@st.composite
def elementwise(draw: Any) -> Case:
    shape = draw(st.lists(small, min_size=0, max_size=3))
    kind = draw(st.sampled_from([*ACTIVATIONS, "Softmax", "LogSoftmax", "Dropout", "Dropout1d", "Dropout2d"]))
    args: dict[str, Any] = {}
    if kind in ("Softmax", "LogSoftmax"):
        args["dim"] = draw(st.integers(-4, 3))
    if kind.startswith("Dropout"):
        args["p"] = draw(st.sampled_from([0.0, 0.1, 0.5]))
    return Case(kind, args, shape, draw(dtypes))


@st.composite
def reshape(draw: Any) -> Case:
    shape = draw(st.lists(small, min_size=1, max_size=3))
    if draw(st.booleans()):
        args = {"start_dim": draw(st.integers(-4, 3)), "end_dim": draw(st.integers(-4, 3))}
        return Case("Flatten", args, shape, draw(dtypes))
    dim = draw(st.integers(-len(shape) - 1, len(shape)))
    size = shape[dim] if -len(shape) <= dim < len(shape) else 4
    split = draw(st.sampled_from([[size], [1, size], [size, 1], [2, size // 2 or 1], [-1, 1]]))
    return Case("Unflatten", {"dim": dim, "unflattened_size": split}, shape, draw(dtypes))


@st.composite
def embedding(draw: Any) -> Case:
    args = {"num_embeddings": draw(st.integers(1, 9)), "embedding_dim": draw(small)}
    dtype = draw(st.sampled_from(["int64"] * 6 + ["float32"]))
    return Case("Embedding", args, draw(st.lists(small, min_size=0, max_size=2)), dtype)


@st.composite
def recurrent(draw: Any) -> Case:
    kind = draw(st.sampled_from(["RNN", "LSTM", "GRU"]))
    features, hidden = draw(small), draw(st.integers(2, 6))
    args: dict[str, Any] = {
        "input_size": features,
        "hidden_size": hidden,
        "num_layers": draw(st.integers(1, 2)),
        "bidirectional": draw(st.booleans()),
        "batch_first": draw(st.booleans()),
    }
    if kind == "LSTM" and draw(st.booleans()):
        args["proj_size"] = draw(st.integers(1, hidden - 1))
    shape = [*draw(st.lists(small, max_size=1)), draw(near(features))]
    dtype = draw(st.sampled_from(["float32"] * 6 + ["int64"]))
    return Case(kind, args, shape, dtype)


@st.composite
def attention(draw: Any) -> Case:
    heads = draw(st.integers(1, 3))
    embed = heads * draw(st.integers(1, 3))
    args = {"embed_dim": embed, "num_heads": heads, "batch_first": draw(st.booleans()), "bias": draw(st.booleans())}
    shape = [*draw(st.lists(small, max_size=1)), draw(near(embed))]
    dtype = draw(st.sampled_from(["float32"] * 6 + ["int64"]))
    return Case("MultiheadAttention", args, shape, dtype)


# -- the properties --------------------------------------------------------------------------------


@examples(250)
@given(linear())
def test_linear(case: Case) -> None:
    agree(case)


@examples(600)
@given(conv())
def test_convolutions(case: Case) -> None:
    agree(case)


@examples(600)
@given(pool())
def test_pools(case: Case) -> None:
    agree(case)


@examples(250)
@given(adaptive())
def test_adaptive_pools(case: Case) -> None:
    agree(case)


@examples(400)
@given(norm())
def test_norms(case: Case) -> None:
    agree(case)


@examples(300)
@given(elementwise())
def test_activations_and_dropout(case: Case) -> None:
    agree(case)


@examples(200)
@given(reshape())
def test_flatten_and_unflatten(case: Case) -> None:
    agree(case)


@examples(150)
@given(embedding())
def test_embedding(case: Case) -> None:
    agree(case)


@examples(250)
@given(recurrent())
def test_recurrent(case: Case) -> None:
    agree(case)


@examples(200)
@given(attention())
def test_attention(case: Case) -> None:
    agree(case)
