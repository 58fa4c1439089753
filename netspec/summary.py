"""The build summary: one row per module, with shapes, parameters, multiply-adds and memory.

In: a built model, the meta model ``infer`` made (same structure, no memory) and the
per-sample input shape. Out: ``Summary`` rows (module path, type, input and output shapes,
kernel, parameter count, MACs from torch's own FLOP counter run on meta tensors, forward
activation bytes, trainable or frozen, and for Graph children what feeds them) and totals,
rendered as an aligned table or as JSON with the columns chosen (after torchinfo's
``col_names``); ``depth`` folds deeper levels into their parents as torchinfo's ``depth``
does. ``summarize_built`` adds the training footer (optimizer groups as name patterns,
scheduler, warm-up, clipping, loss, ``eval`` modules, ties, averaging).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
import torch.nn as nn
from pydantic import BaseModel
from torch.utils.flop_counter import FlopCounterMode

from .compiler.memory import human
from .compiler.shapes import output_shapes
from .io.checkpoint import tied_groups

if TYPE_CHECKING:
    from .api import Built


COLUMNS = ("input", "output", "kernel", "params", "macs", "trainable", "memory", "connected")
DEFAULT_COLUMNS = ("output", "params", "macs", "trainable")
_HEADERS = {
    "input": "Input shape",
    "output": "Output shape",
    "kernel": "Kernel",
    "params": "Params",
    "macs": "MACs",
    "trainable": "Train",
    "memory": "Memory",
    "connected": "Connected to",
}


@dataclass
class Row:
    name: str
    type: str
    depth: int
    output_shape: Any
    params: int
    trainable: int
    macs: int | None
    input_shape: Any = None
    kernel: list[int] | None = None
    memory: int | None = None  # forward activation bytes per sample (the module's output)
    connected: list[str] = field(default_factory=list)  # for Graph children: the values feeding them


@dataclass
class Summary:
    model_name: str
    rows: list[Row]
    total_params: int
    trainable_params: int
    size_bytes: int
    total_macs: int | None
    groups: list[dict[str, Any]] = field(default_factory=list)
    columns: tuple[str, ...] = DEFAULT_COLUMNS
    forward_bytes: int | None = None  # activation bytes per sample of one forward (leaf outputs)
    footer: list[tuple[str, str]] = field(default_factory=list)  # (label, text): scheduler, loss, ties, ...

    def to_dict(self) -> dict[str, Any]:
        layers = []
        for r in self.rows:
            entry = {**asdict(r), "output_shape": _json_shape(r.output_shape)}
            entry["input_shape"] = _json_shape(r.input_shape)
            layers.append(entry)
        return {
            "name": self.model_name,
            "columns": list(self.columns),
            "layers": layers,
            "totals": {
                "params": self.total_params,
                "trainable_params": self.trainable_params,
                "frozen_params": self.total_params - self.trainable_params,
                "size_mb": round(self.size_bytes / 1e6, 3),
                "macs": self.total_macs,
                "forward_bytes_per_sample": self.forward_bytes,
                "forward_backward_bytes_per_sample": None if self.forward_bytes is None else 2 * self.forward_bytes,
            },
            "optimizer_groups": self.groups,
            "training": {label: text for label, text in self.footer},
        }

    def cells(self) -> tuple[list[str], list[list[str]]]:
        """The table's header and rows as text, one cell per chosen column (the table and the HTML page)."""
        header = ["Layer (type)", *(_HEADERS[c] for c in self.columns)]
        rows = []
        for r in self.rows:
            label = "  " * r.depth + (
                f"{r.name.rsplit('.', 1)[-1]} ({r.type})" if r.name else f"{self.model_name} ({r.type})"
            )
            rows.append([label, *(self._cell(r, c) for c in self.columns)])
        return header, rows

    @staticmethod
    def _cell(r: Row, column: str) -> str:
        if column == "input":
            return format_shape(r.input_shape)
        if column == "output":
            return format_shape(r.output_shape)
        if column == "kernel":
            return "[" + ", ".join(map(str, r.kernel)) + "]" if r.kernel else "-"
        if column == "params":
            return f"{r.params:,}" if r.params else "-"
        if column == "macs":
            return _count(r.macs) if r.macs else "-"
        if column == "memory":
            return human(r.memory) if r.memory else "-"
        if column == "connected":
            return ", ".join(r.connected) or "-"
        if r.trainable == r.params and r.params:
            return "yes"
        return "no" if r.params and not r.trainable else ("part" if r.params else "-")

    def footer_lines(self) -> list[str]:
        """The totals and training lines under the table (also the HTML page's footer)."""
        out = [
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Frozen params: {self.total_params - self.trainable_params:,}",
            f"Params size: {human(self.size_bytes)}",
        ]
        if self.total_macs is not None:
            out.append(f"Total MACs: {_count(self.total_macs)} (per sample)")
        if self.forward_bytes is not None:
            out.append(f"Forward pass size: {human(self.forward_bytes)} (per sample, layer outputs)")
            out.append(f"Forward/backward pass size: {human(2 * self.forward_bytes)} (per sample)")
        for k, g in enumerate(self.groups):
            members = ", ".join(g.get("members", [])) or "(rest)"
            settings = f"lr={g.get('lr')} weight_decay={g.get('weight_decay')} params={g.get('params', 0):,}"
            out.append(f"Group {k}: {settings}  {members}")
        out.extend(f"{label}: {text}" for label, text in self.footer)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_jsonable) + "\n"

    def to_table(self) -> str:
        header, body = self.cells()
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        rule = "=" * (sum(widths) + 2 * (len(widths) - 1))

        def line(cells: list[str]) -> str:
            return "  ".join(
                c.ljust(w) if i == 0 or self.columns[i - 1] == "connected" else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()

        out = [rule, line(header), rule, *(line(b) for b in body), rule, *self.footer_lines(), rule]
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


def format_shape(shape: Any) -> str:
    """A traced shape as the table prints it: ``[B, 64, 56, 56]``, nested for tuple and dict outputs."""
    if shape is None:
        return "-"
    if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape):
        dims = ["B", *map(str, shape[1:])] if shape and shape[0] == TRACE_BATCH else list(map(str, shape))
        return "[" + ", ".join(dims) + "]"
    if isinstance(shape, dict):
        return "{" + ", ".join(f"{k}: {format_shape(v)}" for k, v in shape.items()) + "}"
    if isinstance(shape, (tuple, list)):
        return "(" + ", ".join(format_shape(s) for s in shape) + ")"
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


@dataclass
class _Trace:
    outputs: dict[str, Any]
    inputs: dict[str, Any]
    macs: dict[str, int]
    output_bytes: dict[str, int]  # per sample


def _tensor_bytes(value: Any) -> int:
    """Bytes of every tensor in a module's output, per sample (the batch dimension divided out)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size() // TRACE_BATCH
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    return 0


def _trace_meta(meta_model: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype) -> _Trace:
    """Input and output shapes, output bytes and MACs per sample for each module name, from one forward
    on meta tensors."""
    model = copy.deepcopy(meta_model).eval()
    trace = _Trace({}, {}, {}, {})
    handles = []
    for name, module in model.named_modules():

        def hook(_m: nn.Module, _i: Any, out: Any, name: str = name) -> None:
            trace.outputs.setdefault(name, output_shapes(out))
            # every call counts (a ReLU a Graph calls twice keeps two outputs alive for backward)
            trace.output_bytes[name] = trace.output_bytes.get(name, 0) + _tensor_bytes(out)

        def pre_hook(_m: nn.Module, args: Any, name: str = name) -> None:
            shapes = output_shapes(args)
            trace.inputs.setdefault(name, shapes[0] if isinstance(shapes, tuple) and len(shapes) == 1 else shapes)

        handles.append(module.register_forward_hook(hook))
        handles.append(module.register_forward_pre_hook(pre_hook))
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(torch.empty((TRACE_BATCH, *input_shape), dtype=dtype, device="meta"))
    finally:
        for h in handles:
            h.remove()
    for key, ops in counter.get_flop_counts().items():
        # FLOPs count a multiply-add as 2; divide by the batch to report per sample.
        per_sample = sum(ops.values()) // (2 * TRACE_BATCH)
        if key == "Global":
            trace.macs[""] = per_sample
            continue
        _, _, rest = key.partition(".")
        trace.macs[rest] = per_sample
    return trace


def _shape_bytes(shape: Any, element_size: int) -> int:
    """Bytes per sample of an output whose shapes inference recorded (batch dimension first)."""
    if isinstance(shape, tuple) and shape and all(isinstance(d, int) for d in shape):
        return math.prod(shape[1:]) * element_size
    if isinstance(shape, (tuple, list)):
        return sum(_shape_bytes(s, element_size) for s in shape)
    if isinstance(shape, dict):
        return sum(_shape_bytes(s, element_size) for s in shape.values())
    return 0


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
        analytic = _analytic(model, shapes) if shapes and "input" not in columns else None
        if analytic is not None and shapes is not None:
            macs = analytic
            element = _float_element_size(model, input_dtype)
            leaf_bytes = {n: _shape_bytes(shapes[n], element) for n in leaves if n in shapes}
        else:
            trace = _trace_meta(meta_model(), input_shape, input_dtype)
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
            params=sum(_numel(p) for p in params),
            trainable=sum(_numel(p) for p in params if p.requires_grad),
            macs=macs.get(name, 0) if input_shape is not None else None,
            input_shape=inputs.get(name),
            kernel=_kernel(getattr(module, "kernel_size", None)),
            memory=memory if input_shape is not None else None,
            connected=connected.get(name, []),
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


def training_footer(built: Built) -> list[tuple[str, str]]:
    """What the table does not show about training: scheduler and warm-up, clipping, loss, modules kept in
    eval mode, the weight average, tied parameters — each a (label, text) line."""
    from .training.explain import compress_names

    doc = built.spec.document
    lines: list[tuple[str, str]] = []
    setup = built.training
    if doc.scheduler is not None and built.scheduler is not None:
        sched = doc.scheduler
        text = _call_text(sched.type or "warm-up only", _extra_args(sched, ("type", "interval", "warmup")))
        text += f", stepped per {sched.interval}"
        if sched.warmup is not None:
            text += f"; warm-up {sched.warmup.steps} {sched.interval}s from {sched.warmup.start_factor:g}× lr"
        lines.append(("Scheduler", text))
    if setup is not None and setup.clip is not None:
        lines.append(("Gradient clipping", setup.clip.describe()))
    if built.loss is not None and doc.loss is not None:
        lines.append(("Loss", _call_text(type(built.loss).__name__, _extra_args(doc.loss, ("type",)))))
    if setup is not None and setup.eval_modules:
        modules = [n for n, _ in built.model.named_modules() if n]
        lines.append(("Eval mode", ", ".join(compress_names(sorted(setup.eval_modules), modules))))
    if doc.average is not None:
        lines.append(("Averaging", _call_text(doc.average.type, _extra_args(doc.average, ("type",)))))
    ties = tied_groups(built.model)
    if ties:
        lines.append(("Tied", "; ".join(" = ".join(names) for names in ties)))
    return lines


def _extra_args(section: BaseModel | str, skip: tuple[str, ...]) -> dict[str, Any]:
    """A pydantic section's user-written arguments (its declared fields that are set, plus extra keys);
    none for a bare type name (``loss: CrossEntropyLoss``)."""
    if isinstance(section, str):
        return {}
    data = section.model_dump(exclude_none=True, by_alias=True)
    return {k: v for k, v in data.items() if k not in skip}


def _call_text(name: str, args: dict[str, Any]) -> str:
    inner = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in args.items())
    return f"{name}({inner})"


def summarize_built(built: Built, depth: int | None = None, columns: tuple[str, ...] = DEFAULT_COLUMNS) -> Summary:
    """The summary ``netspec build`` prints: the table for ``built``, its optimizer groups and training footer."""
    from .compiler.meta import DTYPES
    from .training import group_summary

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
