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


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    """Tiny tensors: one intra-op thread is ~10x faster than two on a loaded machine (and changes no result)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def examples(n: int) -> Any:
    return settings(
        max_examples=n * SCALE,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


class Case:
    """One drawn case: the layer's catalogue name and arguments, the per-sample input shape and dtype.

    ``forward``: Graph statements calling the layer as ``m`` on the input ``x`` (several inputs, masks,
    an unbatched call ``m(x[0])``), and the names it ``outputs``; None calls the layer on ``x`` directly.
    The statements are plain Python: torch runs the same lines on CPU tensors."""

    def __init__(
        self,
        name: str,
        args: dict[str, Any],
        shape: list[int],
        dtype: str = "float32",
        forward: list[str] | None = None,
        outputs: str | list[str] = "y",
    ) -> None:
        self.name, self.args, self.shape, self.dtype = name, args, shape, dtype
        self.forward, self.outputs = forward, outputs

    def __repr__(self) -> str:
        calls = f", forward {self.forward}" if self.forward else ""
        return f"Case({self.name}, {self.args}, input {self.shape} {self.dtype}{calls})"


def torch_input(case: Case, high: int = 5) -> torch.Tensor:
    shape = (BATCH, *case.shape)
    if case.dtype in ("float32", "float64"):
        return torch.randn(shape, dtype=getattr(torch, case.dtype))
    if case.dtype == "bool":
        return torch.rand(shape) > 0.5
    return torch.randint(0, high, shape)


def run_forward(case: Case, layer: nn.Module, x: torch.Tensor) -> Any:
    """The case's call of ``layer`` on ``x``: its Graph statements run as Python, or ``layer(x)``."""
    if case.forward is None:
        return layer(x)
    env: dict[str, Any] = {"x": x, "m": layer}
    for line in case.forward:
        exec(line, {"__builtins__": {}}, env)  # the test's own statements, run by torch
    return env[case.outputs] if isinstance(case.outputs, str) else tuple(env[n] for n in case.outputs)


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
                out = run_forward(case, layer, x)
        except Exception:  # noqa: BLE001 - any refusal by torch is the verdict being compared
            return False, None
    return True, output_shapes(out)


def netspec_verdict(case: Case) -> tuple[bool, Any]:
    """(accepted, inferred output shapes) from ``netspec.read``; the SpecError's text when it refuses."""
    model: dict[str, Any] = {"type": case.name, **case.args}
    if case.forward is not None:
        model = {"type": "Graph", "inputs": ["x"], "layers": {"m": model}, "forward": case.forward}
        model["outputs"] = case.outputs
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
    parameters, or an InstanceNorm without affine parameters or running statistics, declared for other
    channels than it gets runs in torch (InstanceNorm warns), but the spec says something else. A
    LayerNorm/RMSNorm ``normalized_shape`` covering every dim of its input would, in a batch, cover the
    batch dim: refused even for one unbatched sample, which validation cannot tell from a batch."""
    if case.name in ("LayerNorm", "RMSNorm"):
        normalized = case.args["normalized_shape"]
        whole = case.forward is not None and len(_sizes(normalized)) == len(case.shape)
        return whole and "does not match the trailing dims" in message
    if case.name == "GroupNorm":
        return not case.args.get("affine", True) and "channels but the input" in message
    if case.name.startswith("InstanceNorm"):
        unused = not case.args.get("affine") and not case.args.get("track_running_stats")
        return unused and "features (channels) but" in message
    return False


def _sizes(value: object) -> list[object]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def agree(case: Case) -> None:
    want_ok, want = torch_verdict(case)
    got_ok, got = netspec_verdict(case)
    if want_ok and case.name.startswith("ConvTranspose") and 0 in want:
        # An empty output: torch's kernel gives it for a batch of 2 or more and refuses a batch of 1 or one
        # sample. A spec that fails at batch 1 is refused (docs/testing.md).
        assert not got_ok and "output size is too small" in got, f"{case}: netspec accepts an empty output {got}"
        return
    if want_ok and not got_ok and stricter_on_purpose(case, got):
        return
    if want_ok != got_ok:
        detail = f": netspec infers {got}" if got_ok else f":\n{got}"
        pytest.fail(f"torch {'accepts' if want_ok else 'rejects'} {case}, netspec does not{detail}")
    if want_ok:
        assert got == want, f"{case}: netspec infers {got}, torch computes {want}"


# -- strategies ------------------------------------------------------------------------------------

small = st.integers(1, 6)
dtypes = st.sampled_from(["float32"] * 7 + ["float64"] * 2 + ["int64", "bool"])
floats = st.sampled_from(["float32"] * 3 + ["float64"])


def near(value: int) -> st.SearchStrategy[int]:
    """Mostly ``value`` (what fits), sometimes a neighbour (what does not)."""
    return st.one_of(st.just(value), st.just(value), st.just(value), st.integers(max(1, value - 2), value + 2))


def per_dim(n: int, values: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    return st.one_of(values, st.lists(values, min_size=n, max_size=n))


def maybe_unbatched(draw: Any, case: Case) -> Case:
    """One case in six calls the layer on one sample, ``m(x[0])``: the per-sample shape without a batch."""
    if draw(st.integers(0, 5)) == 0:
        case.forward = ["y = m(x[0])"]
    return case


def sample(draw: Any) -> tuple[str, bool]:
    """The statement naming the layer's input ``s``: the batch, or one sample of it (unbatched)."""
    unbatched = draw(st.integers(0, 4)) == 0
    return ("s = x[0]" if unbatched else "s = x"), unbatched


@st.composite
def linear(draw: Any) -> Case:
    features = draw(small)
    shape = [*draw(st.lists(small, max_size=2)), draw(near(features))]
    args = {"in_features": features, "out_features": draw(small), "bias": draw(st.booleans())}
    return maybe_unbatched(draw, Case("Linear", args, shape, draw(dtypes)))


@st.composite
def bilinear(draw: Any) -> Case:
    in1, in2 = draw(small), draw(small)
    args = {"in1_features": in1, "in2_features": in2, "out_features": draw(small), "bias": draw(st.booleans())}
    shape = [*draw(st.lists(small, max_size=1)), max(in1, in2) + draw(st.integers(0, 1))]
    line, _ = sample(draw)
    second = draw(st.sampled_from(["", "", "", ".double()", ".float()"]))
    forward = [line, f"y = m(s[..., :{draw(near(in1))}], s[..., :{draw(near(in2))}]{second})"]
    return Case("Bilinear", args, shape, draw(floats), forward)


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
    return maybe_unbatched(draw, Case(name, args, [draw(near(in_channels)), *spatial], draw(dtypes)))


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
    return maybe_unbatched(draw, Case(f"{kind}Pool{n}d", args, [draw(small), *spatial], draw(dtypes)))


@st.composite
def adaptive(draw: Any) -> Case:
    n = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["Max", "Avg"]))
    size = st.one_of(st.integers(0, 5), st.none()) if n > 1 else st.integers(0, 5)
    output_size = draw(st.one_of(st.integers(1, 5), st.lists(size, min_size=n, max_size=n)))
    spatial = draw(st.lists(st.integers(1, 9), min_size=n, max_size=n))
    case = Case(f"Adaptive{kind}Pool{n}d", {"output_size": output_size}, [draw(small), *spatial], draw(dtypes))
    return maybe_unbatched(draw, case)


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
    return maybe_unbatched(draw, Case(kind, args, shape, draw(dtypes)))


@st.composite
def instance_norm(draw: Any) -> Case:
    n = draw(st.integers(1, 3))
    channels = draw(small)
    args = {
        "num_features": channels,
        "affine": draw(st.booleans()),
        "track_running_stats": draw(st.booleans()),
    }
    rank = n + draw(st.sampled_from([0, 0, 0, 0, -1, 1]))  # sometimes a dimension too few or too many
    spatial = draw(st.lists(st.integers(1, 4), min_size=max(rank, 0), max_size=max(rank, 0)))
    case = Case(f"InstanceNorm{n}d", args, [draw(near(channels)), *spatial], draw(dtypes))
    return maybe_unbatched(draw, case)


ACTIVATIONS = ["ReLU", "GELU", "Tanh", "SiLU", "Sigmoid", "LeakyReLU", "ELU", "Hardswish", "Mish", "Identity"]


@st.composite
def elementwise(draw: Any) -> Case:
    shape = draw(st.lists(small, min_size=0, max_size=3))
    kind = draw(st.sampled_from([*ACTIVATIONS, "Softmax", "LogSoftmax", "Dropout", "Dropout1d", "Dropout2d"]))
    args: dict[str, Any] = {}
    if kind in ("Softmax", "LogSoftmax"):
        args["dim"] = draw(st.integers(-4, 3))
    if kind.startswith("Dropout"):
        args["p"] = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    return maybe_unbatched(draw, Case(kind, args, shape, draw(dtypes)))


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
    dtype = draw(st.sampled_from(["int64"] * 6 + ["float32", "bool"]))
    case = Case("Embedding", args, draw(st.lists(small, min_size=0, max_size=2)), dtype)
    if draw(st.integers(0, 3)) == 0:  # the embeddings then a float layer: float32 + float64 promotes
        case.forward = ["e = m(x)", f"y = e + e{draw(st.sampled_from(['', '.double()', '.float()']))}"]
    return maybe_unbatched(draw, case)


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
    dtype = draw(st.sampled_from(["float32"] * 5 + ["float64", "int64"]))
    return maybe_unbatched(draw, Case(kind, args, shape, dtype))


@st.composite
def attention(draw: Any) -> Case:
    """MultiheadAttention: kdim/vdim, batch_first, masks of right and wrong shapes and dtypes, need_weights."""
    heads = draw(st.integers(1, 3))
    embed = heads * draw(st.integers(1, 3))
    kdim, vdim = draw(st.one_of(st.none(), small)), draw(st.one_of(st.none(), small))
    batch_first = draw(st.booleans())
    args: dict[str, Any] = {"embed_dim": embed, "num_heads": heads, "batch_first": batch_first}
    args |= {"bias": draw(st.booleans()), "kdim": kdim, "vdim": vdim}
    if draw(st.integers(0, 3)) == 0:
        args |= {"add_bias_kv": draw(st.booleans()), "add_zero_attn": draw(st.booleans())}
    line, unbatched = sample(draw)
    length = draw(small)
    shape = [length, max(embed, kdim or embed, vdim or embed)]
    if not unbatched and draw(st.integers(0, 5)) == 0:
        shape = shape[1:]  # a 2-D batch: one sample of it is 1-D
    q, k, v = draw(near(embed)), draw(near(kdim or embed)), draw(near(vdim or embed))
    forward = [line, f"q = s[..., :{q}]", f"k = s[..., :{k}]", f"v = s[..., :{v}]"]
    # (batch, source) of a batched call as the layer reads x: batch_first (BATCH, length), else (length, BATCH).
    target = length if unbatched or batch_first else BATCH
    batch = None if unbatched else (BATCH if batch_first else length)
    kwargs = []
    padding = draw(st.sampled_from(["none", "none", "bool", "float", "wrong"]))
    if padding != "none":
        mask = "(s[..., 0] > 0)" if padding in ("bool", "wrong") else "s[..., 0]"
        flip = (not unbatched and not batch_first) != (padding == "wrong")
        forward.append(f"p = {mask}{'.t()' if flip and not unbatched else ''}{'[:1]' if flip and unbatched else ''}")
        kwargs.append("key_padding_mask=p")
    attn = draw(st.sampled_from(["none", "none", "2d", "3d", "bool", "wrong"]))
    if attn != "none":
        size = target + (attn == "wrong")
        dims = [size, size] if attn != "3d" or batch is None else [batch * heads, size, size]
        forward.append(f"a = s.new_zeros({', '.join(map(str, dims))}){'.bool()' if attn == 'bool' else ''}")
        kwargs.append("attn_mask=a")
    if draw(st.booleans()):
        kwargs.append(f"need_weights={draw(st.booleans())}")
    if draw(st.booleans()):
        kwargs.append(f"average_attn_weights={draw(st.booleans())}")
    forward.append(f"y, w = m(q, k, v{''.join(', ' + a for a in kwargs)})")
    dtype = draw(st.sampled_from(["float32"] * 5 + ["float64", "int64"]))
    return Case("MultiheadAttention", args, shape, dtype, forward, ["y", "w"])


@st.composite
def transformer(draw: Any) -> Case:
    """TransformerEncoderLayer, TransformerDecoderLayer and Transformer: batch_first both ways, norm_first."""
    kind = draw(st.sampled_from(["TransformerEncoderLayer"] * 2 + ["TransformerDecoderLayer"] * 2 + ["Transformer"]))
    heads = draw(st.integers(1, 2))
    model = heads * draw(st.integers(1, 3))
    args: dict[str, Any] = {
        "d_model": model,
        "nhead": heads,
        "dim_feedforward": draw(st.integers(1, 6)),
        "dropout": draw(st.sampled_from([0.0, 0.1])),
        "batch_first": draw(st.booleans()),
        "norm_first": draw(st.booleans()),
        "activation": draw(st.sampled_from(["relu", "gelu"])),
    }
    if kind == "Transformer":
        args |= {"num_encoder_layers": 1, "num_decoder_layers": 1}
    line, unbatched = sample(draw)
    shape = [draw(small), draw(near(model))]
    if kind == "TransformerEncoderLayer":
        forward = [line, "y = m(s)"]
    else:  # a memory as long as the target, or shorter (which is its batch when not batch_first)
        cut = draw(st.sampled_from([None, None, 1]))
        memory = "s" if cut is None else ("s[:1]" if unbatched else "s[:, :1]")
        forward = [line, f"y = m(s, {memory})"]
    return Case(kind, args, shape, draw(floats), forward)


# -- the properties --------------------------------------------------------------------------------


@examples(200)
@given(linear())
def test_linear(case: Case) -> None:
    agree(case)


@examples(100)
@given(bilinear())
def test_bilinear(case: Case) -> None:
    agree(case)


@examples(500)
@given(conv())
def test_convolutions(case: Case) -> None:
    agree(case)


@examples(450)
@given(pool())
def test_pools(case: Case) -> None:
    agree(case)


@examples(200)
@given(adaptive())
def test_adaptive_pools(case: Case) -> None:
    agree(case)


@examples(300)
@given(norm())
def test_norms(case: Case) -> None:
    agree(case)


@examples(200)
@given(instance_norm())
def test_instance_norms(case: Case) -> None:
    agree(case)


@examples(250)
@given(elementwise())
def test_activations_and_dropout(case: Case) -> None:
    agree(case)


@examples(150)
@given(reshape())
def test_flatten_and_unflatten(case: Case) -> None:
    agree(case)


@examples(150)
@given(embedding())
def test_embedding(case: Case) -> None:
    agree(case)


@examples(200)
@given(recurrent())
def test_recurrent(case: Case) -> None:
    agree(case)


@examples(300)
@given(attention())
def test_attention(case: Case) -> None:
    agree(case)


@examples(120)
@given(transformer())
def test_transformer_layers(case: Case) -> None:
    agree(case)
