"""Semantic checks torch users trip over, run on a layer's arguments before anything is built.

In: a ``LayerType`` and its already type-checked keyword arguments (defaults not yet filled
in). Out: ``(argument, message, hint)`` triples for impossible values: sizes that must be
positive, probabilities outside [0, 1], groups that do not divide channels, ``padding='same'``
with a stride. Checks that need the input's shape (LayerNorm's trailing dims, Linear's
in_features) live in ``shapes``.
"""

from __future__ import annotations

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
        if name == "padding" and isinstance(value, (int, list, tuple)) and negative:
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
    groups = args.get("groups", 1)
    for name in ("in_channels", "out_channels"):
        channels = args.get(name)
        if isinstance(channels, int) and isinstance(groups, int) and groups > 0 and channels % groups:
            found.append((name, f"{name}={channels} is not divisible by groups={groups}", None))
    return found


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
    ("MultiheadAttention", _divisible("embed_dim", "num_heads")),
    ("TransformerEncoderLayer", _divisible("d_model", "nhead")),
    ("TransformerDecoderLayer", _divisible("d_model", "nhead")),
    ("Transformer", _divisible("d_model", "nhead")),
]


def check_layer(layer: LayerType, args: Mapping[str, Any]) -> list[Finding]:
    """Impossible values in ``args`` for ``layer``; empty when all is well."""
    if layer.origin not in ("torch.nn", "netspec"):
        return []
    found = _generic(layer, args)
    for prefix, check in _BY_PREFIX:
        if layer.name == prefix or (layer.name.startswith(prefix) and prefix in ("Conv", "LazyConv")):
            found.extend(check(layer, args))
    return found
