"""Which input dtypes a ``torch.nn`` layer's forward accepts, checked before it runs on meta.

In: a constructed (meta) layer and the tensors it is called with. Out: None when the call is
fine, or the message for an input the real forward rejects: an int64 or bool tensor into a layer
that computes in floating point (Linear, Conv, the norms, LSTM, MultiheadAttention, GELU, ...),
or floating-point indices into Embedding. Meta tensors compute no values, so ``F.linear`` on an
int64 meta tensor succeeds where the CPU and CUDA kernels fail; these are the kernels' rules, as
torch 2.x's CPU kernels apply them.

Only ``torch.nn``'s own classes are judged (a registered model may well take token ids), and a
subclass only when it runs that class's ``forward``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

# Index layers: integer indices only.
_INDICES: tuple[type[nn.Module], ...] = (nn.Embedding, nn.EmbeddingBag)
_INDEX_DTYPES = (torch.int64, torch.int32)

# Parameter-free layers whose CPU kernels are floating-point only ("not implemented for 'Long'").
# Layers with floating-point parameters or buffers are judged by those, below.
_FLOAT_ONLY: tuple[type[nn.Module], ...] = (
    nn.CELU, nn.ELU, nn.SELU, nn.GELU, nn.GLU, nn.Hardshrink, nn.Hardsigmoid, nn.Hardswish, nn.LeakyReLU,
    nn.LogSigmoid, nn.LogSoftmax, nn.Mish, nn.RReLU, nn.SiLU, nn.Softmax, nn.Softmax2d, nn.Softmin, nn.Softplus,
    nn.Softshrink, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d, nn.MaxPool1d, nn.Upsample, nn.UpsamplingBilinear2d, nn.UpsamplingNearest2d,
    nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)  # fmt: skip
# Integers work, bool does not ("Boolean inputs not supported for relu").
_NO_BOOL: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Softsign, nn.Tanhshrink, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d,
    nn.AvgPool2d, nn.AvgPool3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d, nn.LocalResponseNorm,
)  # fmt: skip


def _owner(kind: type[nn.Module], table: tuple[type[nn.Module], ...]) -> bool:
    """``kind`` is one of ``table`` or a subclass that runs the same ``forward``."""
    return any(issubclass(kind, klass) and kind.forward is klass.forward for klass in table)


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _article(t: torch.Tensor) -> str:
    name = _dtype(t)
    return ("an " if name[0] in "aeiou" else "a ") + name


def takes_indices(module: nn.Module) -> bool:
    """Embedding and EmbeddingBag: their input is integer indices."""
    return issubclass(type(module), _INDICES)


def input_dtype_problem(module: nn.Module, inputs: Sequence[object]) -> str | None:
    """Why ``module``'s forward would reject the dtype of its tensor ``inputs``, or None."""
    kind = type(module)
    tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
    indices = issubclass(kind, _INDICES)
    if not tensors or (not indices and all(t.is_floating_point() for t in tensors)):
        return None  # the common case, decided without looking at the module's tensors
    if not getattr(kind.forward, "__module__", "").startswith("torch.nn"):
        return None
    name = kind.__name__
    if _owner(kind, _INDICES):
        first = tensors[0]
        if first.dtype not in _INDEX_DTYPES:
            return f"{name} takes integer indices (int64 or int32), got a {_dtype(first)} tensor"
        return None
    odd = next((t for t in tensors if not (t.is_floating_point() or t.is_complex())), None)
    if odd is None:
        return None
    if _owner(kind, _NO_BOOL):
        return f"{name} does not take bool tensors, got a bool tensor" if odd.dtype == torch.bool else None
    floating_state = any(t.is_floating_point() for t in (*module.parameters(), *module.buffers()))
    if floating_state or _owner(kind, _FLOAT_ONLY):
        return f"{name} computes in floating point and cannot take {_article(odd)} tensor"
    return None


__all__ = ["input_dtype_problem", "takes_indices"]
