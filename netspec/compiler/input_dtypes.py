"""Which input dtypes a ``torch.nn`` layer's forward accepts, checked before it runs on meta.

In: a constructed (meta) layer and the arguments it is called with. Out: None when the call is
fine, or a ``DtypeProblem`` for an input the real forward rejects:

- an int64 or bool tensor into a layer that computes in floating point (Linear, Conv, the norms,
  LSTM, MultiheadAttention, GELU, ...), or anything but int64/int32 indices into Embedding;
- a floating tensor of another dtype than the layer's parameters: float64 into float32 Linear,
  Conv, LSTM, MultiheadAttention, the Transformer layers, PReLU, Bilinear, or float32 into a model
  built in float64 or bfloat16 ("expected float32 input (the layer's parameters), got float64").
  The norms' CPU kernels take a reduced-precision input (float16, bfloat16) with float32
  parameters and nothing else mixed; RMSNorm takes any mix; InstanceNorm is judged by its affine
  parameters only (running statistics of another dtype are fine).

Meta tensors compute no values and mostly skip these checks (``F.linear`` of a float64 meta
tensor and float32 weights succeeds where the CPU and CUDA kernels fail); these are the kernels'
rules, as torch 2.x's CPU kernels apply them, verified by a CPU forward in
tests/test_property_layers.py. Masks (``attn_mask``, ``key_padding_mask``, ...) are not inputs
here: torch's own checks of them run on meta. A layer's output dtype is what its meta run gives;
elementwise Graph statements promote (float32 + float64 is float64) as torch does.

Only ``torch.nn``'s own classes are judged (a registered model may well take token ids), and a
subclass only when it runs that class's ``forward``.
"""

from __future__ import annotations

import functools
import inspect
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .meta import shape_text

# Index layers: integer indices only.
_INDICES: tuple[type[nn.Module], ...] = (nn.Embedding, nn.EmbeddingBag)
_INDEX_DTYPES = (torch.int64, torch.int32)

# Parameter-free layers whose CPU kernels are floating-point only ("not implemented for 'Long'").
# Layers with floating-point parameters or buffers are judged by those, below.
_FLOAT_ONLY: tuple[type[nn.Module], ...] = (
    nn.CELU, nn.ELU, nn.SELU, nn.GELU, nn.GLU, nn.Hardshrink, nn.Hardsigmoid, nn.Hardswish, nn.LeakyReLU,
    nn.LogSigmoid, nn.LogSoftmax, nn.Mish, nn.RReLU, nn.SiLU, nn.Softmax, nn.Softmax2d, nn.Softmin, nn.Softplus,
    nn.Softshrink,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d, nn.MaxPool1d, nn.Upsample, nn.UpsamplingBilinear2d, nn.UpsamplingNearest2d,
    nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)  # fmt: skip
# In training, dropping with 0 < p < 1 scales by 1/(1-p): floating point only; p = 0 or 1 takes any dtype.
_DROPOUTS: tuple[type[nn.Module], ...] = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)  # fmt: skip
# An empty output (an output size of 0) is returned before the kernel looks at the dtype.
_EMPTY_ANY_DTYPE: tuple[type[nn.Module], ...] = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
# Integers work, bool does not ("Boolean inputs not supported for relu").
_NO_BOOL: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Softsign, nn.Tanhshrink, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d,
    nn.AvgPool2d, nn.AvgPool3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d, nn.LocalResponseNorm,
)  # fmt: skip

# The norms' CPU kernels' "mixed dtype": a float16/bfloat16 input with float32 parameters (and only that).
_MIXED_NORMS: tuple[type[nn.Module], ...] = (
    nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
)  # fmt: skip
_REDUCED = (torch.float16, torch.bfloat16)
# Judged by their parameters only: instance_norm takes running statistics of any floating dtype.
_PARAMETERS_ONLY: tuple[type[nn.Module], ...] = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
# Any floating input with any floating weight (F.rms_norm).
_ANY_FLOAT: tuple[type[nn.Module], ...] = (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()


@dataclass(frozen=True)
class DtypeProblem:
    """An input the layer's forward rejects: the message, the tensor, and the dtype it needs."""

    message: str
    tensor: torch.Tensor
    wanted: str  # the dtype to cast to: "float32", "int64", ...
    floating: bool = False  # a floating input into parameters of another floating dtype


def _owner(kind: type[nn.Module], table: tuple[type[nn.Module], ...]) -> bool:
    """``kind`` is one of ``table`` or a subclass that runs the same ``forward``."""
    return any(issubclass(kind, klass) and kind.forward is klass.forward for klass in table)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _article(t: torch.Tensor) -> str:
    name = dtype_name(t.dtype)
    return ("an " if name[0] in "aeiou" else "a ") + name


def takes_indices(module: nn.Module) -> bool:
    """Embedding and EmbeddingBag: their input is integer indices."""
    return issubclass(type(module), _INDICES)


@functools.lru_cache(maxsize=256)
def _parameter_names(kind: type[nn.Module]) -> tuple[str, ...]:
    """The names of ``kind.forward``'s positional parameters after ``self``."""
    try:
        params = list(inspect.signature(kind.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return ()
    return tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def _data(kind: type[nn.Module], args: Sequence[object], kwargs: Mapping[str, object]) -> list[torch.Tensor]:
    """The tensors a call passes as data (its masks left out), an initial state's tuple flattened."""
    if not kwargs and len(args) == 1:  # the common call, ``layer(x)``
        return [args[0]] if isinstance(args[0], torch.Tensor) else _data(kind, (), {"input": args[0]})
    names = _parameter_names(kind) if kwargs or len(args) > 1 else ()
    out: list[torch.Tensor] = []
    values = [v for i, v in enumerate(args) if i >= len(names) or "mask" not in names[i]]
    values += [v for k, v in kwargs.items() if "mask" not in k]
    for value in values:
        if isinstance(value, torch.Tensor):
            out.append(value)
        elif isinstance(value, tuple):
            out.extend(v for v in value if isinstance(v, torch.Tensor))
    return out


def _sizes(value: object) -> tuple[object, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


@dataclass(frozen=True)
class _Rules:
    """Which of the rules above a layer class follows (worked out once per class)."""

    judged: bool  # torch.nn's own forward
    indices: bool
    dropout: bool
    empty_any_dtype: bool
    no_bool: bool
    float_only: bool
    any_float: bool
    mixed: bool
    parameters_only: bool


@functools.lru_cache(maxsize=1024)
def _rules(kind: type[nn.Module]) -> _Rules:
    return _Rules(
        judged=(getattr(kind.forward, "__module__", None) or "").startswith("torch.nn"),  # None: generated code
        indices=_owner(kind, _INDICES),
        dropout=_owner(kind, _DROPOUTS),
        empty_any_dtype=_owner(kind, _EMPTY_ANY_DTYPE),
        no_bool=_owner(kind, _NO_BOOL),
        float_only=_owner(kind, _FLOAT_ONLY),
        any_float=_owner(kind, _ANY_FLOAT),
        mixed=_owner(kind, _MIXED_NORMS),
        parameters_only=_owner(kind, _PARAMETERS_ONLY),
    )


def _state_dtype(module: nn.Module, rules: _Rules) -> torch.dtype | None:
    """The floating dtype of the layer's parameters (then buffers), or None when it has none."""
    # A layer's own tensors first (torch's registries: no generator machinery, called for every layer call).
    own = (
        module._parameters.values()
        if rules.parameters_only
        else (*module._parameters.values(), *module._buffers.values())
    )
    found = next((t.dtype for t in own if t is not None and t.is_floating_point()), None)
    if found is not None or not module._modules:
        return found
    params = module.parameters()
    tensors = params if rules.parameters_only else itertools.chain(params, module.buffers())
    return next((t.dtype for t in tensors if t.is_floating_point()), None)


def input_dtype_problem(
    module: nn.Module, args: Sequence[object], kwargs: Mapping[str, object] | None = None
) -> DtypeProblem | None:
    """Why ``module``'s forward would reject the dtype of its tensor inputs, or None."""
    kind = type(module)
    rules = _rules(kind)
    if not rules.judged:
        return None
    tensors = _data(kind, args, kwargs or {})
    if not tensors:
        return None
    name = kind.__name__
    if rules.indices:
        first = tensors[0]
        if first.dtype not in _INDEX_DTYPES:
            message = f"{name} takes integer indices (int64 or int32), got a {dtype_name(first.dtype)} tensor"
            return DtypeProblem(message, first, "int64")
        return None
    odd = next((t for t in tensors if not (t.is_floating_point() or t.is_complex())), None)
    if odd is not None:
        if rules.dropout:
            if getattr(module, "p", 0.5) in (0, 1):
                return None
            message = f"{name} with p={module.p} scales in floating point and cannot take {_article(odd)} tensor"
            return DtypeProblem(message, odd, "float32")
        if rules.empty_any_dtype and 0 in _sizes(getattr(module, "output_size", None)):
            return None
        if rules.no_bool:
            if odd.dtype != torch.bool:
                return None
            return DtypeProblem(f"{name} does not take bool tensors, got a bool tensor", odd, "float32")
        state = _state_dtype(module, rules)
        if state is not None or rules.float_only:
            wanted = dtype_name(state or torch.float32)
            message = f"{name} computes in floating point and cannot take {_article(odd)} tensor"
            return DtypeProblem(message, odd, wanted)
        return None
    if rules.any_float or (rules.float_only and not rules.mixed):
        return None  # parameter-free (or any mix): the kernels keep the input's dtype, as meta does
    state = _state_dtype(module, rules)
    if state is None:
        return None  # parameter-free: the kernels promote or keep the input's dtype, as meta does
    mixed = rules.mixed and state == torch.float32
    for t in tensors:
        if t.is_floating_point() and t.dtype != state and not (mixed and t.dtype in _REDUCED):
            wanted = dtype_name(state)
            message = f"{name} expected {wanted} input (the layer's parameters), got {dtype_name(t.dtype)}"
            return DtypeProblem(message, t, wanted, floating=True)
    return None


# The Graph statement that converts to a dtype.
_CASTS = {"float32": "float", "float64": "double", "float16": "half", "bfloat16": "bfloat16", "int64": "long"}


def dtype_message(problem: DtypeProblem, source: str) -> tuple[str, str]:
    """The message and hint for ``problem``, whose tensor came from ``source`` ("the input", a layer, ...)."""
    got = dtype_name(problem.tensor.dtype)
    name = "i" if problem.wanted.startswith("int") else "h"
    cast = f"convert in a Graph statement: {name} = x.{_CASTS.get(problem.wanted, 'float')}()"
    ways = [f"set input.dtype: {problem.wanted}"] if source == "the input" else []
    if problem.floating:
        ways.append(f"build in {got} (--dtype {got}, or build(spec, dtype='{got}'))")
    hint = ", or ".join([*ways, cast])
    return f"{problem.message} (input {shape_text(problem.tensor.shape)} from {source})", hint


__all__ = ["DtypeProblem", "dtype_message", "dtype_name", "input_dtype_problem", "takes_indices"]
