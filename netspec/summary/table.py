"""The summary's rows and their text: the ``Row`` and ``Summary`` records, shapes as the table prints them.

In: rows (module path, type, shapes, kernel, parameter count, MACs, activation bytes, trainable or
frozen, what feeds a Graph child) and totals. Out: an aligned table, its cells (for the HTML page)
or JSON with the columns chosen (after torchinfo's ``col_names``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..compiler.memory import human

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


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


# Inference runs a batch of 2 on meta tensors (batch 1 could not tell a batch dim from a real size-1 dim,
# and BatchNorm refuses it in training), and the summary a second probe at 3: a dim that changes with the
# batch is shown as B (``netspec.summary.batch``). Without the second probe a leading 2 is taken for B.
TRACE_BATCH = 2
SECOND_BATCH = 3


def _labelled(shape: Any) -> bool:
    """A shape whose dims were told apart across the two probes: every dim a string ("B", "64", "32B")."""
    return isinstance(shape, tuple) and bool(shape) and all(isinstance(d, str) for d in shape)


def format_shape(shape: Any) -> str:
    """A shape as the table prints it: ``[B, 64, 56, 56]``, ``[2, B, 32]``, nested for tuple and dict outputs."""
    if shape is None:
        return "-"
    if _labelled(shape):
        return "[" + ", ".join(shape) + "]"
    if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape):
        dims = ["B", *map(str, shape[1:])] if shape and shape[0] == TRACE_BATCH else list(map(str, shape))
        return "[" + ", ".join(dims) + "]"
    if isinstance(shape, dict):
        return "{" + ", ".join(f"{k}: {format_shape(v)}" for k, v in shape.items()) + "}"
    if isinstance(shape, (tuple, list)):
        return "(" + ", ".join(format_shape(s) for s in shape) + ")"
    return "-"


def _json_shape(shape: Any) -> Any:
    """The table's shape as JSON: sizes as numbers, the batch dimension as "B" (or "32B"), as in the table."""
    if _labelled(shape):
        return [int(d) if d.isdigit() else d for d in shape]
    if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape):
        return ["B", *shape[1:]] if shape and shape[0] == TRACE_BATCH else list(shape)
    if isinstance(shape, dict):
        return {k: _json_shape(v) for k, v in shape.items()}
    if isinstance(shape, (tuple, list)):
        return [_json_shape(s) for s in shape]
    return None
