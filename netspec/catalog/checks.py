"""Semantic checks torch users trip over, run on a layer's arguments before anything is built.

In: a ``LayerType`` and its already type-checked keyword arguments (defaults not yet filled
in). Out: ``(argument, message, hint)`` triples for impossible values: sizes that must be
positive, probabilities outside [0, 1], groups that do not divide channels, ``padding='same'``
with a stride. Checks that need the input's shape (LayerNorm's trailing dims, Linear's
in_features) live in ``shapes``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import did_you_mean
from .registry import LayerType

Finding = tuple[str | None, str, str | None]

# Arguments that are counts or sizes: zero or negative is never meaningful.
POSITIVE = frozenset(
    {
        "in_channels", "out_channels", "in_features", "out_features", "in1_features", "in2_features",
        "num_features", "num_channels", "num_groups", "kernel_size", "dilation", "groups", "embed_dim",
        "num_heads", "hidden_size", "input_size", "num_layers", "d_model", "nhead", "dim_feedforward",
        "num_embeddings", "embedding_dim", "num_encoder_layers", "num_decoder_layers", "upscale_factor",
        "downscale_factor", "kdim", "vdim", "n_classes", "in_size",
    }
)  # fmt: skip
PROBABILITIES = frozenset({"p", "dropout", "label_smoothing"})
# Losses check `reduction` only when called; KLDivLoss also takes "batchmean".
REDUCTIONS = ("none", "mean", "sum")


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _generic(layer: LayerType, args: Mapping[str, Any]) -> list[Finding]:
    found: list[Finding] = []
    for name, value in args.items():
        if name in POSITIVE or (name == "stride" and value is not None):
            bad = [v for v in _values(value) if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0]
            if bad:
                found.append((name, f"{name} must be positive, got {value!r}", None))
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if name in PROBABILITIES and is_number and not 0.0 <= value <= 1.0:
            found.append((name, f"{name} is a probability and must be in [0, 1], got {value!r}", None))
        if name == "reduction" and layer.name.endswith("Loss") and isinstance(value, str):
            allowed = (*REDUCTIONS, "batchmean") if layer.name == "KLDivLoss" else REDUCTIONS
            if value not in allowed:
                found.append((name, f"reduction must be one of {', '.join(map(repr, allowed))}, got {value!r}",
                              did_you_mean(value, allowed) or None))  # fmt: skip
        negative = any(isinstance(v, int) and v < 0 for v in _values(value))
        # ZeroPad/ConstantPad crop where padding is negative (NASNet's ZeroPad2d((-1, 1, -1, 1))); F.pad's
        # constant mode takes it, so only the other layers refuse it
        crops = layer.name.startswith(("ZeroPad", "ConstantPad"))
        if name == "padding" and isinstance(value, (int, list, tuple)) and negative and not crops:
            found.append((name, f"padding must not be negative, got {value!r}", None))
    return found


def _conv(layer: LayerType, args: Mapping[str, Any]) -> list[Finding]:
    found: list[Finding] = []
    padding = args.get("padding", 0)
    stride = args.get("stride", 1)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            found.append(("padding", f"padding must be 'same', 'valid' or a size, got {padding!r}", None))
        elif padding == "same" and any(s != 1 for s in _values(stride)):
            found.append(
                ("padding", f"padding='same' needs stride 1, got stride {stride!r}", "use an explicit padding size")
            )
        elif "Transpose" in layer.name:
            found.append(("padding", f"{layer.name} takes a numeric padding, got {padding!r}", None))
    if "Transpose" in layer.name:
        found.extend(_output_padding(layer, args))
    groups = args.get("groups", 1)
    for name in ("in_channels", "out_channels"):
        channels = args.get(name)
        if isinstance(channels, int) and isinstance(groups, int) and groups > 0 and channels % groups:
            found.append((name, f"{name}={channels} is not divisible by groups={groups}", None))
    return found


def _spatial_dims(layer: LayerType) -> int | None:
    """1, 2 or 3 for ``Conv2d``, ``AdaptiveAvgPool3d``, ...; None for a name without ``Nd``."""
    tail = layer.name[-2:]
    return int(tail[0]) if tail in ("1d", "2d", "3d") else None


def _per_dim(value: Any, n: int) -> list[Any] | None:
    """An int or an n-list as n values, or None when it is neither (the type checks report that)."""
    values = _values(value)
    return (
        values * n
        if len(values) == 1 and not isinstance(value, (list, tuple))
        else values
        if len(values) == n
        else None
    )


def _output_padding(layer: LayerType, args: Mapping[str, Any]) -> list[Finding]:
    """torch's ConvTranspose forward: each ``output_padding`` must be smaller than its stride or its dilation."""
    n = _spatial_dims(layer)
    if n is None or "output_padding" not in args:
        return []
    padding = _per_dim(args["output_padding"], n)
    stride = _per_dim(args.get("stride", 1), n)
    dilation = _per_dim(args.get("dilation", 1), n)
    if padding is None or stride is None or dilation is None:
        return []
    for p, s, d in zip(padding, stride, dilation, strict=True):
        if all(isinstance(v, int) for v in (p, s, d)) and p >= s and p >= d:
            message = (
                f"output_padding must be smaller than stride or dilation in every dim, got "
                f"output_padding={_yaml(args['output_padding'])} with stride={_yaml(args.get('stride', 1))}, "
                f"dilation={_yaml(args.get('dilation', 1))}"
            )
            return [("output_padding", message, "output_padding picks one of the sizes a stride > 1 allows")]
    return []


def _yaml(value: Any) -> str:
    """A value as the spec writes it: ``[null]``, not Python's ``(None,)``."""
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _adaptive_pool(layer: LayerType, args: Mapping[str, Any]) -> list[Finding]:
    """``output_size`` as torch's adaptive pools take it: ``n`` sizes (or one int), ``None`` (keep that
    dim's input size) only in the 2d and 3d pools, never negative."""
    n = _spatial_dims(layer)
    if n is None or "output_size" not in args:
        return []
    size = args["output_size"]
    name = layer.name
    if size is None:
        return [
            ("output_size", f"{name} needs an output_size, got null", f"e.g. output_size: {[1] * n if n > 1 else 1}")
        ]
    sizes = _values(size)
    if isinstance(size, (list, tuple)) and len(sizes) != n:
        return [("output_size", f"{name} output_size needs {n} size(s), got {len(sizes)}: {_yaml(size)}", None)]
    if n == 1 and None in sizes:
        hint = "None keeps a dim's input size only in the 2d and 3d pools; give the size, or use Identity"
        return [("output_size", f"{name} output_size must be an integer, got {_yaml(size)}", hint)]
    if any(isinstance(v, int) and not isinstance(v, bool) and v < 0 for v in sizes):
        return [("output_size", f"{name} output_size must not be negative, got {_yaml(size)}", None)]
    return []


def _group_norm(layer: LayerType, args: Mapping[str, Any]) -> list[Finding]:
    groups, channels = args.get("num_groups"), args.get("num_channels")
    if isinstance(groups, int) and isinstance(channels, int) and groups > 0 and channels % groups:
        divisors = [d for d in range(1, channels + 1) if channels % d == 0]
        near = min(divisors, key=lambda d: abs(d - groups))
        return [
            ("num_groups", f"num_groups={groups} does not divide num_channels={channels}", f"try num_groups: {near}")
        ]
    return []


def _divisible(size_arg: str, heads_arg: str) -> Callable[[LayerType, Mapping[str, Any]], list[Finding]]:
    def check(layer: LayerType, args: Mapping[str, Any]) -> list[Finding]:
        size, heads = args.get(size_arg), args.get(heads_arg)
        if isinstance(size, int) and isinstance(heads, int) and heads > 0 and size % heads:
            return [(heads_arg, f"{size_arg}={size} is not divisible by {heads_arg}={heads}", None)]
        return []

    return check


_BY_PREFIX: list[tuple[str, Callable[[LayerType, Mapping[str, Any]], list[Finding]]]] = [
    ("Conv", _conv),
    ("LazyConv", _conv),
    ("GroupNorm", _group_norm),
    ("AdaptiveAvgPool", _adaptive_pool),
    ("AdaptiveMaxPool", _adaptive_pool),
    ("MultiheadAttention", _divisible("embed_dim", "num_heads")),
    ("TransformerEncoderLayer", _divisible("d_model", "nhead")),
    ("TransformerDecoderLayer", _divisible("d_model", "nhead")),
    ("Transformer", _divisible("d_model", "nhead")),
]


_FAMILIES = ("Conv", "LazyConv", "AdaptiveAvgPool", "AdaptiveMaxPool")  # prefixes that name a family of layers


def check_layer(layer: LayerType, args: Mapping[str, Any]) -> list[Finding]:
    """Impossible values in ``args`` for ``layer``; empty when all is well."""
    if layer.origin not in ("torch.nn", "netspec"):
        return []
    found = _generic(layer, args)
    for prefix, check in _BY_PREFIX:
        if layer.name == prefix or (layer.name.startswith(prefix) and prefix in _FAMILIES):
            found.extend(check(layer, args))
    return found
