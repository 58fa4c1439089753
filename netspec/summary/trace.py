"""One forward on meta tensors under torch's FLOP counter: what each module saw and made.

In: the meta model inference made and the per-sample input shape. Out: per module name, the input
and output shapes, the output bytes per sample and the multiply-adds per sample.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..compiler.shapes import output_shapes
from .table import TRACE_BATCH


@dataclass
class Trace:
    outputs: dict[str, Any]
    inputs: dict[str, Any]
    macs: dict[str, int]
    output_bytes: dict[str, int]  # per sample


def _tensor_bytes(value: Any, batch: int) -> int:
    """Bytes of every tensor in a module's output, per sample (the batch divided out)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size() // batch
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v, batch) for v in value)
    if isinstance(value, dict):
        return sum(_tensor_bytes(v, batch) for v in value.values())
    return 0


def trace_meta(
    meta_model: nn.Module,
    input_shape: tuple[int, ...],
    dtype: torch.dtype,
    batch: int = TRACE_BATCH,
    count: bool = True,
) -> Trace:
    """Input and output shapes, output bytes and MACs per sample for each module name, from one forward
    on meta tensors at ``batch`` (without ``count``: shapes and bytes only, no FLOP counter)."""
    model = copy.deepcopy(meta_model).eval()
    # The FLOP counter's module tracker hooks the gradient of every input that requires one. Under no_grad
    # a view of a parameter (CaiT's ``cls_token.expand(B, -1, -1)`` handed to a child) requires grad but
    # has no gradient function, and the tracker fails on it: the copy's parameters require none.
    for p in model.parameters():
        p.requires_grad_(False)
    trace = Trace({}, {}, {}, {})
    handles = []
    for name, module in model.named_modules():

        def hook(_m: nn.Module, _i: Any, out: Any, name: str = name) -> None:
            trace.outputs.setdefault(name, output_shapes(out))
            # every call counts (a ReLU a Graph calls twice keeps two outputs alive for backward)
            trace.output_bytes[name] = trace.output_bytes.get(name, 0) + _tensor_bytes(out, batch)

        def pre_hook(_m: nn.Module, args: Any, name: str = name) -> None:
            shapes = output_shapes(args)
            trace.inputs.setdefault(name, shapes[0] if isinstance(shapes, tuple) and len(shapes) == 1 else shapes)

        handles.append(module.register_forward_hook(hook))
        handles.append(module.register_forward_pre_hook(pre_hook))
    counter = None
    if count:
        from torch.utils.flop_counter import FlopCounterMode  # its first use imports torch._dynamo: only here

        counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter if counter is not None else contextlib.nullcontext():
            model(torch.empty((batch, *input_shape), dtype=dtype, device="meta"))
    finally:
        for h in handles:
            h.remove()
    for key, ops in counter.get_flop_counts().items() if counter is not None else ():
        # FLOPs count a multiply-add as 2; divide by the batch to report per sample.
        per_sample = sum(ops.values()) // (2 * batch)
        if key == "Global":
            trace.macs[""] = per_sample
            continue
        _, _, rest = key.partition(".")
        trace.macs[rest] = per_sample
    return trace
