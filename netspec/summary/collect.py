"""The build summary's rows for a model: one per module, with shapes, parameters, MACs and memory.

In: a built model, the meta model ``infer`` made (same structure, no memory) and the per-sample
input shape. Out: a ``Summary``. MACs come from the shapes inference computed when every layer
allows it (``macs``), otherwise from one meta forward under torch's FLOP counter (``trace``);
``depth`` folds deeper levels into their parents as torchinfo's ``depth`` does.
``summarize_built`` adds the optimizer groups and the training footer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
import torch.nn as nn

from .footer import training_footer
from .macs import analytic_macs, shape_bytes
from .table import COLUMNS, DEFAULT_COLUMNS, Row, Summary
from .trace import trace_meta

if TYPE_CHECKING:
    from ..api import Built


def numel(t: torch.Tensor) -> int:
    """Elements of a tensor; 0 for a lazy module's parameter, which has no size until its first forward."""
    return 0 if isinstance(t, nn.parameter.UninitializedTensorMixin) else t.numel()


def _connections(model: nn.Module) -> dict[str, list[str]]:
    """For every child a Graph calls: the values its call reads (children, inputs, statement results), as
    Keras's "Connected to" column shows them."""
    out: dict[str, list[str]] = {}
    for prefix, module in model.named_modules():
        if not isinstance(module, fx.GraphModule):
            continue
        for n in module.graph.nodes:
            if n.op != "call_module":
                continue
            feeds: list[str] = []
            fx.node.map_arg((n.args, n.kwargs), lambda a, feeds=feeds: feeds.append(_value_name(a)) or a)
            name = f"{prefix}.{n.target}" if prefix else str(n.target)
            known = out.setdefault(name, [])
            known.extend(f for f in feeds if f not in known)
    return out


def _value_name(n: fx.Node) -> str:
    """A Graph value as a person reads it: the child that made it, or the statement's name for it."""
    if n.op == "call_module":
        return str(n.target)
    if n.op == "call_function":
        return getattr(n.target, "__name__", n.name)
    return str(n.target) if n.op == "call_method" else n.name


def summarize(
    model: nn.Module,
    meta_model: Callable[[], nn.Module],
    model_name: str,
    input_shape: tuple[int, ...] | None,
    input_dtype: torch.dtype = torch.float32,
    depth: int | None = None,
    groups: list[dict[str, Any]] | None = None,
    shapes: dict[str, Any] | None = None,
    columns: tuple[str, ...] = DEFAULT_COLUMNS,
) -> Summary:
    """Rows and totals for ``model``. ``shapes`` (from inference) spares the meta trace for models made only
    of layers whose MACs follow from their shapes (unless the ``input`` column asks for input shapes);
    anything else runs ``meta_model()`` once under torch's FLOP counter."""
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown summary column {unknown[0]!r}; the columns are {', '.join(COLUMNS)}")
    macs: dict[str, int] = {}
    inputs: dict[str, Any] = {}
    leaf_bytes: dict[str, int] = {}
    leaves = {name for name, m in model.named_modules() if next(m.children(), None) is None}
    if input_shape is not None:
        analytic = analytic_macs(model, shapes) if shapes and "input" not in columns else None
        if analytic is not None and shapes is not None:
            macs = analytic
            element = _float_element_size(model, input_dtype)
            leaf_bytes = {n: shape_bytes(shapes[n], element) for n in leaves if n in shapes}
        else:
            trace = trace_meta(meta_model(), input_shape, input_dtype)
            shapes, macs, inputs = trace.outputs, trace.macs, trace.inputs
            leaf_bytes = {n: b for n, b in trace.output_bytes.items() if n in leaves}
    shapes = shapes or {}
    connected = _connections(model) if "connected" in columns else {}
    rows: list[Row] = []
    for name, module in model.named_modules():
        level = 0 if not name else name.count(".") + 1
        if depth is not None and level > depth:
            continue
        params = list(module.parameters())
        prefix = name + "."
        memory = sum(b for n, b in leaf_bytes.items() if not name or n == name or n.startswith(prefix))
        rows.append(Row(
            name=name,
            type=type(module).__name__,
            depth=level,
            output_shape=shapes.get(name),
            params=sum(numel(p) for p in params),
            trainable=sum(numel(p) for p in params if p.requires_grad),
            macs=macs.get(name, 0) if input_shape is not None else None,
            input_shape=inputs.get(name),
            kernel=_kernel(getattr(module, "kernel_size", None)),
            memory=memory if input_shape is not None else None,
            connected=connected.get(name, []),
        ))  # fmt: skip
    all_params = list(model.parameters())
    size = sum(numel(t) * t.element_size() for t in [*all_params, *model.buffers()] if numel(t))
    return Summary(
        model_name=model_name,
        rows=rows,
        total_params=sum(numel(p) for p in all_params),
        trainable_params=sum(numel(p) for p in all_params if p.requires_grad),
        size_bytes=size,
        total_macs=macs.get("") if input_shape is not None else None,
        groups=groups or [],
        columns=tuple(columns),
        forward_bytes=sum(leaf_bytes.values()) if input_shape is not None else None,
    )


def _kernel(value: object) -> list[int] | None:
    """A layer's ``kernel_size`` as a list (Conv2d's ``(3, 3)``, MaxPool2d's ``3``); None for other layers."""
    if isinstance(value, (tuple, list)):
        return [int(v) for v in value]
    return [value] if isinstance(value, int) else None


def _float_element_size(model: nn.Module, input_dtype: torch.dtype) -> int:
    """The element size of the model's activations: its floating parameters' dtype (a float input's otherwise)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.element_size()
    return torch.empty((), dtype=input_dtype if input_dtype.is_floating_point else torch.float32).element_size()


def summarize_built(built: Built, depth: int | None = None, columns: tuple[str, ...] = DEFAULT_COLUMNS) -> Summary:
    """The summary ``netspec build`` prints: the table for ``built``, its optimizer groups and training footer."""
    from ..compiler.meta import DTYPES
    from ..training import group_summary

    spec = built.spec
    inp = spec.document.input
    summary = summarize(
        built.model,
        lambda: spec.inferred.meta_model,
        spec.name,
        tuple(inp.shape) if inp else None,
        DTYPES[inp.dtype] if inp else torch.float32,
        depth=depth,
        shapes=spec.inferred.shapes,
        groups=group_summary(built.training) if built.optimizer is not None and built.training else [],
        columns=columns,
    )
    summary.footer = training_footer(built)
    return summary
