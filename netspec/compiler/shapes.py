"""Output shapes of common layers computed from their arguments, without running them.

In: a constructed (meta) layer and its input shapes. Out: the output shape, or None when
no rule applies and the caller must run the layer on meta tensors instead. Running torch
ops on meta tensors costs 0.1-1 ms each in torch 2.x (Python decompositions), so a
10,000-layer spec would take seconds to check; these formulas are the ones the torch docs
give for each layer, and each raises ``ValueError`` with torch's wording for inputs the
layer would reject. ``sequence_shapes`` does the same for the recurrent layers and
attention (several inputs or outputs), ``function_shapes`` for Graph-statement functions;
``tests/test_property_layers.py`` holds every rule to a CPU forward of torch's own layer.

A rule applies to a class only when that class runs the rule's own ``forward`` (a subclass that
overrides ``forward``, like timm's ``Conv2dSame``, runs on meta instead), and never to a lazy
module before its first input. A rule rejects a wrong input by raising ``ShapeError``; any other
exception from a rule is a bug in netspec and is raised as ``ShapeRuleBug``, never reported as
the user's mistake.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.overrides import TorchFunctionMode

Shape = tuple[int, ...]
_META = torch.device("meta")  # a device object: torch.empty parses a device string on every call


class NoRule(Exception):
    """No rule applies to this input (an unbatched conv, a mask argument): run the layer on meta instead."""


class ShapeError(ValueError):
    """The input is one the layer (or function) rejects: the user's mistake, with torch's wording."""


class ShapeRuleBug(RuntimeError):
    """A shape rule failed in a way it should not: a bug in netspec, not in the spec."""


_SAME_SHAPE: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Softshrink,
    nn.Hardshrink,
    nn.Threshold,
    nn.LogSigmoid,
    nn.RReLU,
    nn.Identity,
    nn.Dropout,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


def normal_dim(dim: object, ndim: int) -> int:
    """``dim`` normalised the way torch does, or torch's own error for one out of range."""
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise NoRule
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise ShapeError(f"Dimension out of range (expected to be in range of [{-ndim}, {ndim - 1}], but got {dim})")
    return dim % max(ndim, 1)


def flat_shape(x: Shape, start_dim: object, end_dim: object) -> Shape:
    start, end = normal_dim(start_dim, len(x)), normal_dim(end_dim, len(x))
    if start > end:
        raise ShapeError("flatten() has invalid args: start_dim cannot come after end_dim")
    return (*x[:start], math.prod(x[start : end + 1]), *x[end + 1 :])


def _tuple(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _spatial(x: Shape, n: int, layer: str) -> tuple[Shape, Shape]:
    """Split a batched (N, C, *spatial) shape; unbatched inputs are left to the meta fallback."""
    if len(x) != n + 2:
        raise NoRule
    return x[:2], x[2:]


def _conv(m: nn.Module, x: Shape) -> Shape:
    n = len(m.kernel_size)  # type: ignore[arg-type]
    (batch, channels), spatial = _spatial(x, n, type(m).__name__)
    if channels != m.in_channels:
        raise ShapeError(f"expected input with {m.in_channels} channels, got {channels}")
    if isinstance(m.padding, str):
        if m.padding == "same":
            return (batch, m.out_channels, *spatial)  # type: ignore[return-value]
        padding = (0,) * n
    else:
        padding = _tuple(m.padding, n)  # type: ignore[arg-type]
    out = []
    for size, k, s, p, d in zip(spatial, m.kernel_size, m.stride, padding, m.dilation, strict=True):  # type: ignore[arg-type]
        length = (size + 2 * p - d * (k - 1) - 1) // s + 1
        if length <= 0:
            raise ShapeError(f"input spatial size {list(spatial)} is too small for kernel {list(m.kernel_size)}")  # type: ignore[arg-type]
        out.append(length)
    return (batch, m.out_channels, *out)  # type: ignore[return-value]


def _pool(m: nn.Module, x: Shape, n: int) -> Shape:
    head, spatial = _spatial(x, n, type(m).__name__)
    kernel = _tuple(m.kernel_size, n)  # type: ignore[arg-type]
    stride = _tuple(m.stride if m.stride is not None else m.kernel_size, n)  # type: ignore[arg-type]
    padding = _tuple(m.padding, n)  # type: ignore[arg-type]
    dilation = _tuple(getattr(m, "dilation", 1), n)  # type: ignore[arg-type]
    if isinstance(m, nn.AvgPool3d) and any(size < k for size, k in zip(spatial, kernel, strict=True)):
        raise ShapeError(
            f"AvgPool3d needs an input at least as large as its kernel in every dim, padding not counted: "
            f"input {list(spatial)}, kernel {list(kernel)}"
        )
    out = []
    for size, k, s, p, d in zip(spatial, kernel, stride, padding, dilation, strict=True):
        if p > k // 2:
            raise ShapeError(f"pad should be at most half of effective kernel size, but got pad={p}, kernel_size={k}")
        span = size + 2 * p - d * (k - 1) - 1
        length = (math.ceil(span / s) if m.ceil_mode else span // s) + 1  # type: ignore[attr-defined]
        if m.ceil_mode and (length - 1) * s >= size + p:  # type: ignore[attr-defined]
            length -= 1
        if length <= 0:
            raise ShapeError(
                f"output size is too small: the window (kernel {list(kernel)}, dilation {list(dilation)}) is larger "
                f"than the input {list(spatial)} padded by {list(padding)}"
            )
        out.append(length)
    return (*head, *out)


def _conv_transpose(m: nn.Module, x: Shape) -> Shape:
    """``(in - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1`` per dim; one
    unbatched sample too (the meta kernel would give it an empty output that the CPU kernel refuses)."""
    n = len(m.kernel_size)  # type: ignore[arg-type]
    if len(x) == n + 1:
        return _conv_transpose(m, (1, *x))[1:]
    (batch, channels), spatial = _spatial(x, n, type(m).__name__)
    if channels != m.in_channels:
        raise ShapeError(f"expected input with {m.in_channels} channels, got {channels}")
    out = []
    sizes = zip(spatial, m.kernel_size, m.stride, m.padding, m.dilation, m.output_padding, strict=True)  # type: ignore[arg-type]
    for size, k, s, p, d, op in sizes:
        if op >= s and op >= d:
            raise ShapeError(f"output padding must be smaller than either stride or dilation, got {op}, {s}, {d}")
        length = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        if length <= 0:  # torch's kernel takes an empty output for a batch of 2 or more, not of 1 or one sample
            raise ShapeError(f"output size is too small: input {list(spatial)} gives {length}")
        out.append(length)
    return (batch, m.out_channels, *out)  # type: ignore[return-value]


def _adaptive(m: nn.Module, x: Shape, n: int) -> Shape:
    head, spatial = _spatial(x, n, type(m).__name__)
    sizes = _tuple(m.output_size, n)  # type: ignore[arg-type]
    if len(sizes) != n or (n == 1 and None in sizes) or any(o is not None and o < 0 for o in sizes):
        raise ShapeError(f"{type(m).__name__}: output_size {list(sizes)} is not {n} non-negative size(s)")
    return (*head, *(s if o is None else o for s, o in zip(spatial, sizes, strict=True)))


def _flatten(m: nn.Flatten, x: Shape) -> Shape:
    return flat_shape(x, m.start_dim, m.end_dim)


def _softmax(m: nn.Module, x: Shape) -> Shape:
    if m.dim is not None:  # type: ignore[attr-defined]
        normal_dim(m.dim, len(x))  # type: ignore[attr-defined]
    return x


def _linear(m: nn.Linear, x: Shape) -> Shape:
    if x[-1] != m.in_features:
        raise ShapeError(f"expected {m.in_features} input features, got {x[-1]}")
    return (*x[:-1], m.out_features)


def _batch_norm(m: nn.Module, x: Shape) -> Shape:
    try:
        m._check_input_dim(torch.empty((0,) * len(x), device="meta"))  # type: ignore[operator]
    except ValueError as err:
        raise ShapeError(str(err)) from None
    if len(x) < 2 or x[1] != m.num_features:
        raise ShapeError(f"expected input with {m.num_features} channels, got shape {list(x)}")
    return x


def _group_norm(m: nn.Module, x: Shape) -> Shape:
    if len(x) < 2:
        raise ShapeError(f"Expected at least 2 dimensions for input tensor but received {len(x)}")
    if x[1] % m.num_groups:  # type: ignore[operator]
        raise ShapeError(f"Expected number of channels in input to be divisible by num_groups, got input {list(x)}")
    if m.affine and x[1] != m.num_channels:  # type: ignore[attr-defined]
        raise ShapeError(f"expected input with {m.num_channels} channels, got shape {list(x)}")
    return x


def _trailing_norm(m: nn.Module, x: Shape) -> Shape:
    """LayerNorm and RMSNorm normalise the trailing ``normalized_shape`` dims; on meta they cost ~1 ms each
    (torch's Python decompositions), RMSNorm's first use also loads torch._dynamo."""
    shape = tuple(m.normalized_shape)  # type: ignore[attr-defined,arg-type]
    if len(x) < len(shape) or tuple(x[len(x) - len(shape) :]) != shape:
        dims = ", ".join(str(d) for d in shape)
        raise ShapeError(
            f"Given normalized_shape={list(shape)}, expected input with shape [*{dims}], but got input of size{list(x)}"
        )
    return x


_POOLS: dict[type[nn.Module], int] = {
    nn.MaxPool1d: 1,
    nn.MaxPool2d: 2,
    nn.MaxPool3d: 3,
    nn.AvgPool1d: 1,
    nn.AvgPool2d: 2,
    nn.AvgPool3d: 3,
}
_ADAPTIVE: dict[type[nn.Module], int] = {
    nn.AdaptiveAvgPool1d: 1,
    nn.AdaptiveAvgPool2d: 2,
    nn.AdaptiveAvgPool3d: 3,
    nn.AdaptiveMaxPool1d: 1,
    nn.AdaptiveMaxPool2d: 2,
    nn.AdaptiveMaxPool3d: 3,
}
_RULES: dict[type[nn.Module], Callable[[nn.Module, Shape], Shape]] = {
    nn.Conv1d: _conv,
    nn.Conv2d: _conv,
    nn.Conv3d: _conv,
    nn.Linear: _linear,  # type: ignore[dict-item]
    nn.Flatten: _flatten,
    nn.Softmax: _softmax,
    nn.LogSoftmax: _softmax,
    nn.Softmin: _softmax,
    nn.BatchNorm1d: _batch_norm,
    nn.BatchNorm2d: _batch_norm,  # type: ignore[dict-item]
    nn.BatchNorm3d: _batch_norm,
    nn.ConvTranspose1d: _conv_transpose,
    nn.ConvTranspose2d: _conv_transpose,
    nn.ConvTranspose3d: _conv_transpose,
    nn.LayerNorm: _trailing_norm,
    nn.GroupNorm: _group_norm,
    **({nn.RMSNorm: _trailing_norm} if hasattr(nn, "RMSNorm") else {}),  # torch >= 2.4
}


def _rule_owner(kind: type[nn.Module]) -> type[nn.Module] | None:
    """The first class in ``kind``'s MRO with a rule (block classes subclass the layer they wrap)."""
    for klass in kind.__mro__:
        if klass in _RULES or klass in _POOLS or klass in _ADAPTIVE or klass in _SAME_SHAPE:
            return klass
        if klass is nn.Module:
            break
    return None


def _rule_for(module: nn.Module) -> Callable[[nn.Module, Shape], Shape] | None:
    klass = _forward_owner(type(module))
    if klass is None:
        return None
    if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params():
        return None  # its sizes come from its first input: run it
    if klass in _RULES:
        return _RULES[klass]
    if klass in _POOLS:
        return lambda m, x, n=_POOLS[klass]: _pool(m, x, n)  # type: ignore[misc]
    if klass in _ADAPTIVE:
        return lambda m, x, n=_ADAPTIVE[klass]: _adaptive(m, x, n)  # type: ignore[misc]
    return lambda m, x: x


@functools.lru_cache(maxsize=1024)  # one answer per class, not per layer (block classes are classes too)
def _forward_owner(kind: type[nn.Module]) -> type[nn.Module] | None:
    """The class with a rule whose ``forward`` ``kind`` runs, or None."""
    klass = _rule_owner(kind)
    # A subclass with its own forward (timm's Conv2dSame pads first) computes something else.
    return klass if klass is not None and kind.forward is klass.forward else None


def output_shape(module: nn.Module, inputs: Sequence[object]) -> Shape | None:
    """The output shape for a single floating-point tensor input, or None to fall back to running it.

    Raises ``ShapeError`` for an input the layer rejects and ``ShapeRuleBug`` when a rule itself fails."""
    if len(inputs) != 1 or not isinstance(inputs[0], torch.Tensor) or not inputs[0].is_floating_point():
        return None
    rule = _rule_for(module)
    if rule is None:
        return None
    # Set in __init__ by torch's conv and pooling layers (read from the instance: nn.Module.__getattr__ is
    # slow to say that a layer has no such attribute).
    own = vars(module)
    if own.get("padding_mode", "zeros") != "zeros" or own.get("return_indices", False):
        return None
    try:
        return rule(module, tuple(inputs[0].shape))
    except NoRule:
        return None
    except ShapeError:
        raise
    except Exception as err:
        raise ShapeRuleBug(
            f"netspec's shape rule for {type(module).__name__} failed on input {list(inputs[0].shape)}: "
            f"{type(err).__name__}: {err}"
        ) from err


def embedding_output(module: nn.Module, inputs: Sequence[object]) -> tuple[Shape, torch.dtype] | None:
    """``nn.Embedding`` on int64/int32 indices: ``(*indices, embedding_dim)`` in the weight's dtype; None
    otherwise (torch then runs it, and words its own error for float indices). Its meta kernel checks
    sizes through ``torch._check``, whose first use imports sympy."""
    if not isinstance(module, nn.Embedding) or type(module).forward is not nn.Embedding.forward:
        return None
    if len(inputs) != 1 or not isinstance(inputs[0], torch.Tensor) or inputs[0].dtype not in (torch.int64, torch.int32):
        return None
    return (*inputs[0].shape, module.embedding_dim), module.weight.dtype


def layer_output(module: nn.Module, inputs: Sequence[object]) -> torch.Tensor | None:
    """The layer's output as a meta tensor from its rule (``output_shape``, ``embedding_output``), or None."""
    shape = output_shape(module, inputs)
    if shape is not None:
        return torch.empty(shape, dtype=inputs[0].dtype, device=_META)  # type: ignore[union-attr]
    indexed = embedding_output(module, inputs)
    return None if indexed is None else torch.empty(indexed[0], dtype=indexed[1], device=_META)


def output_shapes(value: object) -> object:
    """The shapes in a module's output: a tuple for a tensor, nested like the output for tuples and dicts."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (list, tuple)):
        return tuple(output_shapes(v) for v in value)
    if isinstance(value, dict):
        return {k: output_shapes(v) for k, v in value.items()}
    return None


_INIT_FUNCTIONS = frozenset(
    getattr(nn.init, name) for name in dir(nn.init) if name.endswith("_") and not name.startswith("_")
)


class SkipInit(TorchFunctionMode):
    """Makes ``torch.nn.init`` functions no-ops: random fills of meta tensors compute nothing but cost time."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in _INIT_FUNCTIONS:
            return args[0] if args else next(iter((kwargs or {}).values()))
        return func(*args, **(kwargs or {}))
