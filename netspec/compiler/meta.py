"""Inference's vocabulary: the meta device, dtype names, shape text and who produced a tensor.

In: tensors on the ``meta`` device (and the values inference passes around). Out: the names
messages use for them (``[B, 16, 4, 4]``, ``features.pool2 produces 16×4×4=256``), the
constructor arguments the input determines, the torch dtype of each ``input.dtype`` name
(derived from the document's ``DType`` literal), and cache keys for layers that behave alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin

from ..frontend.models import DTYPE_NAMES
from .tree import RNode

META = torch.device("meta")

# Every input.dtype name the document accepts, as a torch dtype.
DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in DTYPE_NAMES}

# Constructor arguments the input determines: name -> which dim of the (batched) input gives it.
CHANNEL_ARGS = ("in_channels", "num_features", "num_channels")
FEATURE_ARGS = ("in_features", "in1_features", "embed_dim", "input_size", "d_model")
SHAPE_ARGS = ("normalized_shape",)
INFERABLE = CHANNEL_ARGS + FEATURE_ARGS + SHAPE_ARGS + ("in2_features",)
NOUN = {
    "in_channels": "input channels",
    "num_features": "features (channels)",
    "num_channels": "channels",
    "in_features": "input features",
    "in1_features": "input features",
    "embed_dim": "embedding features",
    "input_size": "input features",
    "d_model": "model features",
}


def dims(t: torch.Tensor) -> str:
    return "×".join(str(d) for d in t.shape[1:]) or "scalar"


def shape_text(shape: torch.Size | tuple[int, ...]) -> str:
    """A probe's shape in a message, every dim a number: ``infer`` rewrites the batch ones as B afterwards
    (``batchdims.label_problems``)."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


@dataclass(slots=True)
class Producer:
    """Who made a tensor, for messages: ``features.pool2 produces 16×4×4=256``."""

    name: str
    unflattened: tuple[int, ...] | None = None

    def describe(self, size: int) -> str:
        if self.unflattened and len(self.unflattened) > 1:
            return f"{self.name} produces {'×'.join(map(str, self.unflattened))}={size}"
        return f"{self.name} produces {size}"


_ATOMS = frozenset({int, float, bool, str, type(None)})


def typed(value: Any) -> Any:
    """Plain data (numbers, strings, None, lists and tuples of them) as a key that keeps 1, 1.0 and True,
    or [1] and (1,), apart; ``TypeError`` for anything else."""
    kind = type(value)
    if kind in _ATOMS:
        return (kind, value)
    if kind is list or kind is tuple:
        return (kind, tuple(typed(v) for v in value))
    raise TypeError("not plain data")


def typed_items(args: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """``(key, typed(value))`` for every item of ``args``, as one key; ``TypeError`` for data that is not plain."""
    return tuple([(k, (type(v), v) if type(v) in _ATOMS else typed(v)) for k, v in args.items()])


def immutable(value: Any) -> bool:
    """Numbers, strings, None and tuples of them: safe to share between nodes."""
    return type(value) in _ATOMS or (type(value) is tuple and all(immutable(v) for v in value))


def freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):  # most arguments are plain numbers and strings: no call for those
        return tuple(sorted((k, v if type(v) in _ATOMS else freeze(v)) for k, v in value.items()))
    if isinstance(value, torch.Tensor):
        raise TypeError("tensors are not cached")
    return value


def cache_key(node: RNode) -> Any:
    try:
        return (node.layer.name if node.layer else None, node.block, freeze(node.args))
    except TypeError:
        return None


def tensors_of(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors_of(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_of(v)]
    return []


def kwargs_text(args: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={'<node>' if isinstance(v, RNode) else repr(v)}" for k, v in args.items())


def first_tensor(args: tuple[Any, ...]) -> torch.Tensor | None:
    """The first tensor among a call's arguments (the one sizes are inferred from)."""
    for a in args:
        if isinstance(a, torch.Tensor):
            return a
    return None


def lazy_class(cls: type) -> bool:
    return isinstance(cls, type) and issubclass(cls, LazyModuleMixin)


def is_lazy_module(module: nn.Module) -> bool:
    """A lazy module (``LazyLinear``, ...) before its first input has fixed its sizes."""
    return isinstance(module, LazyModuleMixin) and module.has_uninitialized_params()
