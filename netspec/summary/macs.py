"""Multiply-adds and activation bytes from the shapes inference already computed, without running the model.

In: a model and its inferred output shapes per module name. Out: per module name (and ``""`` for
the whole model) the multiply-adds per sample, or None when some layer needs the FLOP counter; an output's bytes per
sample.
"""

from __future__ import annotations

import math
from typing import Any

import torch.fx as fx
import torch.nn as nn

# Leaf layers whose multiply-adds follow from their output shape alone (what the FLOP counter counts for
# them: the matmul or convolution), and layers that contain no matmul or convolution at all.
_COUNTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NO_MACS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_NO_MATMUL = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.Embedding, nn.PReLU)


def _layer_macs(module: nn.Module, out_shape: Any) -> int:
    """Per-sample multiply-adds of a Linear or Conv from its output shape (batch dim first)."""
    if not (isinstance(out_shape, tuple) and out_shape and all(isinstance(d, int) for d in out_shape)):
        return 0
    outputs = math.prod(out_shape) // out_shape[0]
    if isinstance(module, nn.Linear):
        return outputs * module.in_features
    kernel = math.prod(module.kernel_size)  # type: ignore[arg-type]
    return outputs * (module.in_channels // module.groups) * kernel  # type: ignore[operator]


def analytic_macs(model: nn.Module, shapes: dict[str, Any]) -> dict[str, int] | None:
    """MACs from the shapes inference already computed, when every layer is a Linear/Conv or does no
    matmul; None when a module (a Graph's statements, attention, an RNN, ...) needs the FLOP counter."""
    leaf_macs: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, _COUNTED):
            if name not in shapes:
                return None
            leaf_macs[name] = _layer_macs(module, shapes[name])
        elif isinstance(module, fx.GraphModule):
            return None  # statements may multiply (@, matmul, einsum)
        elif isinstance(module, (*_NO_MACS, *_NO_MATMUL)):
            continue
        elif any(True for _ in module.parameters(recurse=False)) or next(module.children(), None) is not None:
            return None  # attention, RNNs, registered classes: only a trace knows
    totals: dict[str, int] = {}
    for name, value in leaf_macs.items():
        parts = name.split(".") if name else []
        for k in range(len(parts) + 1):
            prefix = ".".join(parts[:k])
            totals[prefix] = totals.get(prefix, 0) + value
    return totals


def shape_bytes(shape: Any, element_size: int) -> int:
    """Bytes per sample of an output whose shapes inference recorded (batch dimension first)."""
    if isinstance(shape, tuple) and shape and all(isinstance(d, int) for d in shape):
        return math.prod(shape[1:]) * element_size
    if isinstance(shape, (tuple, list)):
        return sum(shape_bytes(s, element_size) for s in shape)
    if isinstance(shape, dict):
        return sum(shape_bytes(s, element_size) for s in shape.values())
    return 0
