"""The build summary's rows for a model: one per module, with shapes, parameters, MACs and memory.

In: a built model, the meta model ``infer`` made (same structure, no memory) and the per-sample
input shape. Out: a ``Summary``. MACs come from the shapes inference computed when every layer
allows it (``macs``), otherwise from one meta forward under torch's FLOP counter (``trace``);
``depth`` folds deeper levels into their parents as torchinfo's ``depth`` does.
``summarize_built`` adds the optimizer groups and the training footer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
import torch.nn as nn

from ..compiler.batchdims import label_batch
from ..compiler.calls import CallLog
from ..errors import SpecError
from .footer import training_footer
from .macs import analytic_macs
from .table import COLUMNS, DEFAULT_COLUMNS, SECOND_BATCH, TRACE_BATCH, Row, Summary
from .trace import trace_meta

if TYPE_CHECKING:
    from ..api import Built
    from ..spec import Spec


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


def _first_calls(log: CallLog) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each module's output and input shapes at its first call (a single input unwrapped)."""
    outputs = {name: calls[0].output for name, calls in log.layers.items() if calls}
    inputs = {
        name: calls[0].inputs[0] if len(calls[0].inputs) == 1 else calls[0].inputs
        for name, calls in log.layers.items()
        if calls
    }
    return outputs, inputs


def _output_bytes(log: CallLog, element_size: int) -> dict[str, int]:
    """Bytes per sample of each module's outputs, every call counted (a ReLU called twice keeps two)."""
    return {
        name: sum(_all_elements(c.output) for c in calls) * element_size // TRACE_BATCH
        for name, calls in log.layers.items()
    }


def _all_elements(shape: Any) -> int:
    if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape):
        return math.prod(shape)
    if isinstance(shape, (tuple, list)):
        return sum(_all_elements(s) for s in shape)
    if isinstance(shape, dict):
        return sum(_all_elements(s) for s in shape.values())
    return 0


def summarize(
    model: nn.Module,
    meta_model: Callable[[], nn.Module],
    model_name: str,
    input_shape: tuple[int, ...] | None,
    input_dtype: torch.dtype = torch.float32,
    depth: int | None = None,
    groups: list[dict[str, Any]] | None = None,
    calls: CallLog | None = None,
    columns: tuple[str, ...] = DEFAULT_COLUMNS,
    second: CallLog | None = None,
) -> Summary:
    """Rows and totals for ``model``.

    ``calls`` (inference's log at batch ``TRACE_BATCH``) gives the shapes and activation bytes, and the
    MACs wherever every layer and statement has a rule (``macs``); otherwise ``meta_model()`` runs once
    under torch's FLOP counter for the MACs. Without ``calls`` that trace gives everything.
    ``second`` (the log at ``SECOND_BATCH``) tells which dims are the batch."""
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown summary column {unknown[0]!r}; the columns are {', '.join(COLUMNS)}")
    macs: dict[str, int] = {}
    shapes: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    leaf_bytes: dict[str, int] = {}
    leaves = {name for name, m in model.named_modules() if next(m.children(), None) is None}
    if input_shape is not None:
        counted = analytic_macs(model, calls, TRACE_BATCH) if calls is not None else None
        if counted is None or calls is None:
            trace = trace_meta(meta_model(), input_shape, input_dtype)
            shapes, macs, inputs = trace.outputs, trace.macs, trace.inputs
            leaf_bytes = {n: b for n, b in trace.output_bytes.items() if n in leaves}
        else:
            macs = counted
        if calls is not None:
            # inference's shapes win; the trace adds those of modules inside a layer (self_attn in an encoder)
            logged_shapes, logged_inputs = _first_calls(calls)
            shapes, inputs = {**shapes, **logged_shapes}, {**inputs, **logged_inputs}
            if counted is not None:
                element = _float_element_size(model, input_dtype)
                leaf_bytes = {n: b for n, b in _output_bytes(calls, element).items() if n in leaves}
        if second is not None:
            shapes_b, inputs_b = _first_calls(second)
            if set(shapes) - set(shapes_b):  # modules only the trace saw: trace them at the second batch too
                again = trace_meta(meta_model(), input_shape, input_dtype, SECOND_BATCH, count=False)
                shapes_b, inputs_b = {**again.outputs, **shapes_b}, {**again.inputs, **inputs_b}
            shapes = {n: label_batch(s, shapes_b.get(n), TRACE_BATCH, SECOND_BATCH) for n, s in shapes.items()}
            inputs = {n: label_batch(s, inputs_b.get(n), TRACE_BATCH, SECOND_BATCH) for n, s in inputs.items()}
        # A ModuleList or ModuleDict is never called itself: its figure is its elements'.
        for name, module in model.named_modules():
            if isinstance(module, (nn.ModuleList, nn.ModuleDict)) and name not in macs:
                prefix = name + "." if name else ""
                macs[name] = sum(v for n, v in macs.items() if n.startswith(prefix) and "." not in n[len(prefix) :])
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


def second_probe(spec: Spec) -> tuple[CallLog | None, str | None]:
    """Inference's log at ``SECOND_BATCH``, to tell the batch dims; or None and the first problem, for a
    model that fails at that batch size (a hard-coded batch in a ``view``)."""
    from ..compiler.infer import infer

    inp = spec.document.input
    if inp is None:
        return None, None
    try:
        return infer(spec.resolved.root, spec.source, tuple(inp.shape), inp.dtype, batch=SECOND_BATCH).calls, None
    except SpecError as err:
        return None, err.problems[0].message if err.problems else str(err)


def summarize_built(built: Built, depth: int | None = None, columns: tuple[str, ...] = DEFAULT_COLUMNS) -> Summary:
    """The summary ``netspec build`` prints: the table for ``built``, its optimizer groups and training footer."""
    from ..compiler.meta import DTYPES
    from ..training import group_summary

    spec = built.spec
    inp = spec.document.input
    second, failure = second_probe(spec) if inp is not None and _shows_shapes(columns) else (None, None)
    summary = summarize(
        built.model,
        lambda: spec.inferred.meta_model,
        spec.name,
        tuple(inp.shape) if inp else None,
        DTYPES[inp.dtype] if inp else torch.float32,
        depth=depth,
        calls=spec.inferred.calls,
        groups=group_summary(built.training) if built.optimizer is not None and built.training else [],
        columns=columns,
        second=second,
    )
    summary.footer = training_footer(built)
    if failure is not None:
        note = f"at batch {TRACE_BATCH}; a leading {TRACE_BATCH} is shown as B (at batch {SECOND_BATCH}: {failure})"
        summary.footer.insert(0, ("Shapes", note))
    return summary


def _shows_shapes(columns: tuple[str, ...]) -> bool:
    return "input" in columns or "output" in columns
