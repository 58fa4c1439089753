"""Sizes a layer may omit, taken from its first input: ``in_features``, ``in_channels``, ``num_features``,
``normalized_shape``, ``in2_features``, ...

In: a layer node (its catalogue entry says which of these it takes), the tensors it is called
with on meta, who produced them (for messages), and where to report. Out: the node's arguments
completed in place (only added, never changed), and a problem for every size written that the
input contradicts — ``classifier.fc1 expects 400 input features but features.pool2 produces
16×4×4=256`` — with ``False`` returned after one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from .meta import CHANNEL_ARGS, FEATURE_ARGS, NOUN, SHAPE_ARGS, Producer, shape_text
from .tree import RNode

Report = Callable[[str, str, str | None], None]  # (message, argument, hint)

# Layers that also take one unbatched sample, (C, *spatial): the rank of that sample. Their channels are
# dim 0 of an input of this rank, dim 1 of a batch.
_UNBATCHED_RANK: tuple[tuple[type[nn.Module], int], ...] = tuple(
    (getattr(nn, f"{kind}{n}d"), n + 1) for kind in ("Conv", "ConvTranspose", "InstanceNorm") for n in (1, 2, 3)
)


def _channel_dim(cls: object, x: torch.Tensor) -> int:
    """Where the channels of ``x`` are for a layer of class ``cls``: 0 for one unbatched sample, else 1."""
    if isinstance(cls, type):
        for klass, rank in _UNBATCHED_RANK:
            if issubclass(cls, klass):
                return 0 if x.dim() == rank else 1
    return 1


def fill_sizes(
    node: RNode,
    args: tuple[Any, ...],
    x: torch.Tensor,
    producer: Callable[[torch.Tensor], Producer],
    report: Report,
) -> bool:
    """Infer ``node``'s omitted sizes from its first input ``x`` and check the given ones against it."""
    ok = True
    params = node.layer.params if node.layer else {}
    for name in CHANNEL_ARGS + FEATURE_ARGS + SHAPE_ARGS:
        if name not in params or x.dim() < 2:
            continue
        if name in SHAPE_ARGS:
            expected: Any = [x.shape[-1]]
            if name in node.args:
                given = node.args[name]
                given_list = list(given) if isinstance(given, (list, tuple)) else [given]
                if list(x.shape[x.dim() - len(given_list) :]) != given_list or len(given_list) >= x.dim():
                    message = (
                        f"{node.type_name} normalized_shape {given_list} does not match the "
                        f"trailing dims of its input {shape_text(x.shape)} ({producer(x).name})"
                    )
                    report(message, name, None)
                    ok = False
                continue
        else:
            expected = (
                x.shape[_channel_dim(node.layer.cls, x) if node.layer else 1] if name in CHANNEL_ARGS else x.shape[-1]
            )
            if name in node.args:
                given = node.args[name]
                if isinstance(given, int) and given != expected:
                    where = producer(x).describe(int(expected))
                    message = f"{node.label} expects {given} {NOUN.get(name, name)} but {where}"
                    report(message, name, f"set {name}: {expected} or omit it to infer it")
                    ok = False
                continue
        node.args[name] = expected
    if "in2_features" in params and "in2_features" not in node.args:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if len(tensors) > 1:
            node.args["in2_features"] = tensors[1].shape[-1]
    return ok


__all__ = ["fill_sizes"]
