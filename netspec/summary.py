"""The build summary: one row per module, with shapes, parameters and multiply-adds.

In: a built model, the meta model ``infer`` made (same structure, no memory) and the
per-sample input shape. Out: ``Summary`` rows (module path, type, output shape, parameter
count, MACs from torch's own FLOP counter run on meta tensors, trainable or frozen) and
totals, rendered as an aligned table or as JSON; ``depth`` folds deeper levels into their
parents as torchinfo's ``depth`` does.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .compiler.memory import human
from .compiler.shapes import output_shapes


@dataclass
class Row:
    name: str
    type: str
    depth: int
    output_shape: Any
    params: int
    trainable: int
    macs: int | None


@dataclass
class Summary:
    model_name: str
    rows: list[Row]
    total_params: int
    trainable_params: int
    size_bytes: int
    total_macs: int | None
    groups: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.model_name,
            "layers": [{**asdict(r), "output_shape": _json_shape(r.output_shape)} for r in self.rows],
            "totals": {
                "params": self.total_params,
                "trainable_params": self.trainable_params,
                "frozen_params": self.total_params - self.trainable_params,
                "size_mb": round(self.size_bytes / 1e6, 3),
                "macs": self.total_macs,
            },
            "optimizer_groups": self.groups,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_jsonable) + "\n"

    def to_table(self) -> str:
        header = ("Layer (type)", "Output shape", "Params", "MACs", "Train")
        body = []
        for r in self.rows:
            label = "  " * r.depth + (
                f"{r.name.rsplit('.', 1)[-1]} ({r.type})" if r.name else f"{self.model_name} ({r.type})"
            )
            train = (
                "yes"
                if r.trainable == r.params and r.params
                else ("no" if r.params and not r.trainable else ("part" if r.params else "-"))
            )
            body.append((label, _shape(r.output_shape), f"{r.params:,}" if r.params else "-",
                         _count(r.macs) if r.macs else "-", train))  # fmt: skip
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        rule = "=" * (sum(widths) + 2 * (len(widths) - 1))

        def line(cells: tuple[str, ...]) -> str:
            return "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

        out = [rule, line(header), rule, *(line(b) for b in body), rule]
        out.append(f"Total params: {self.total_params:,}")
        out.append(f"Trainable params: {self.trainable_params:,}")
        out.append(f"Frozen params: {self.total_params - self.trainable_params:,}")
        out.append(f"Params size: {human(self.size_bytes)}")
        if self.total_macs is not None:
            out.append(f"Total MACs: {_count(self.total_macs)} (per sample)")
        for k, g in enumerate(self.groups):
            members = ", ".join(g.get("members", [])) or "(rest)"
            settings = f"lr={g.get('lr')} weight_decay={g.get('weight_decay')} params={g.get('params', 0):,}"
            out.append(f"Group {k}: {settings}  {members}")
        out.append(rule)
        return "\n".join(out) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Size):
        return list(value)
    return str(value)


def _numel(t: torch.Tensor) -> int:
    """Elements of a tensor; 0 for a lazy module's parameter, which has no size until its first forward."""
    return 0 if isinstance(t, nn.parameter.UninitializedTensorMixin) else t.numel()


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


# The summary runs a batch of 2 on meta tensors: a leading 2 is the batch dimension, shown as B
# (batch 1 could not tell a batch dim from a real size-1 dim, and BatchNorm refuses it in training).
TRACE_BATCH = 2


def _shape(shape: Any) -> str:
    if shape is None:
        return "-"
    if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape):
        dims = ["B", *map(str, shape[1:])] if shape and shape[0] == TRACE_BATCH else list(map(str, shape))
        return "[" + ", ".join(dims) + "]"
    if isinstance(shape, dict):
        return "{" + ", ".join(f"{k}: {_shape(v)}" for k, v in shape.items()) + "}"
    if isinstance(shape, (tuple, list)):
        return "(" + ", ".join(_shape(s) for s in shape) + ")"
    return "-"


def _json_shape(shape: Any) -> Any:
    """The table's shape as JSON: the traced batch dimension is "B", as in the table, not the trace's 2."""
    if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape):
        return ["B", *shape[1:]] if shape and shape[0] == TRACE_BATCH else list(shape)
    if isinstance(shape, dict):
        return {k: _json_shape(v) for k, v in shape.items()}
    if isinstance(shape, (tuple, list)):
        return [_json_shape(s) for s in shape]
    return None


def _trace_meta(
    meta_model: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype
) -> tuple[dict[str, Any], dict[str, int]]:
    """Output shapes and MACs per sample for each module name, from one forward on meta tensors."""
    model = copy.deepcopy(meta_model).eval()
    shapes: dict[str, Any] = {}
    handles = []
    for name, module in model.named_modules():

        def hook(_m: nn.Module, _i: Any, out: Any, name: str = name) -> None:
            shapes.setdefault(name, output_shapes(out))

        handles.append(module.register_forward_hook(hook))
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(torch.empty((TRACE_BATCH, *input_shape), dtype=dtype, device="meta"))
    finally:
        for h in handles:
            h.remove()
    macs: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        # FLOPs count a multiply-add as 2; divide by the batch to report per sample.
        per_sample = sum(ops.values()) // (2 * TRACE_BATCH)
        if key == "Global":
            macs[""] = per_sample
            continue
        _, _, rest = key.partition(".")
        macs[rest] = per_sample
    return shapes, macs


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


def _analytic(model: nn.Module, shapes: dict[str, Any]) -> dict[str, int] | None:
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


def summarize(
    model: nn.Module,
    meta_model: Callable[[], nn.Module],
    model_name: str,
    input_shape: tuple[int, ...] | None,
    input_dtype: torch.dtype = torch.float32,
    depth: int | None = None,
    groups: list[dict[str, Any]] | None = None,
    shapes: dict[str, Any] | None = None,
) -> Summary:
    """Rows and totals for ``model``. ``shapes`` (from inference) spares the meta trace for models made only
    of layers whose MACs follow from their shapes; anything else runs ``meta_model()`` once under torch's
    FLOP counter."""
    macs: dict[str, int] = {}
    if input_shape is not None:
        analytic = _analytic(model, shapes) if shapes else None
        if analytic is not None and shapes is not None:
            macs = analytic
        else:
            shapes, macs = _trace_meta(meta_model(), input_shape, input_dtype)
    shapes = shapes or {}
    rows: list[Row] = []
    for name, module in model.named_modules():
        level = 0 if not name else name.count(".") + 1
        if depth is not None and level > depth:
            continue
        params = list(module.parameters())
        rows.append(Row(
            name=name,
            type=type(module).__name__,
            depth=level,
            output_shape=shapes.get(name),
            params=sum(_numel(p) for p in params),
            trainable=sum(_numel(p) for p in params if p.requires_grad),
            macs=macs.get(name, 0) if input_shape is not None else None,
        ))  # fmt: skip
    all_params = list(model.parameters())
    size = sum(_numel(t) * t.element_size() for t in [*all_params, *model.buffers()] if _numel(t))
    return Summary(
        model_name=model_name,
        rows=rows,
        total_params=sum(_numel(p) for p in all_params),
        trainable_params=sum(_numel(p) for p in all_params if p.requires_grad),
        size_bytes=size,
        total_macs=macs.get("") if input_shape is not None else None,
        groups=groups or [],
    )
