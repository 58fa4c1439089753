"""``--explain`` and the build summary: what the training sections did to each parameter.

In: a ``TrainingSetup``. Out: ``explain_rows`` (one dict per parameter: name, shape, the
``file:line`` of the init rule that set it or ``"default"``, frozen, param-group index or
``"-"``, lr, weight_decay; a tied tensor is one row, with ``shared_with``: its other names),
``format_explain`` (those rows as an aligned text table) and ``group_summary`` (one dict per
optimizer param group, its members compressed to module prefixes and globs)."""

from __future__ import annotations

import math
from typing import Any

from .patterns import compress_names
from .setup import TrainingSetup

COLUMNS = ("name", "shape", "init", "frozen", "group", "lr", "weight_decay")


def _group_value(setup: TrainingSetup, index: int, key: str) -> Any:
    if setup.optimizer is None or index >= len(setup.optimizer.param_groups):
        return "-"
    group = setup.optimizer.param_groups[index]
    if key == "lr":  # a scheduler may have moved "lr" already (warm-up); "initial_lr" is the set value
        return float(group.get("initial_lr", group["lr"]))
    value = group.get(key, "-")
    return float(value) if isinstance(value, (int, float)) else value


def explain_rows(setup: TrainingSetup) -> list[dict[str, Any]]:
    """One row per parameter, in model order."""
    rows: list[dict[str, Any]] = []
    for name, shape in setup.param_shapes.items():
        index = setup.group_of.get(name)
        rows.append(
            {
                "name": name,
                "shape": list(shape),
                "init": setup.init_sources.get(name, "default"),
                "frozen": name in setup.frozen,
                "group": "-" if index is None else index,
                "lr": "-" if index is None else _group_value(setup, index, "lr"),
                "weight_decay": "-" if index is None else _group_value(setup, index, "weight_decay"),
            }
        )
        if name in setup.shared:  # a tied tensor: one row, under its first name, with its other names
            rows[-1]["shared_with"] = list(setup.shared[name])
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def _name_cell(row: dict[str, Any]) -> str:
    """The parameter's name, with the other names of a tied tensor: ``wte.weight (= lm_head.weight)``."""
    shared = row.get("shared_with") or []
    return str(row["name"]) + (f" (= {', '.join(shared)})" if shared else "")


def format_explain(rows: list[dict[str, Any]]) -> str:
    """``rows`` as an aligned text table with a header line, ending in a newline."""
    table = [list(COLUMNS)] + [[_name_cell(row) if col == "name" else _cell(row.get(col, "")) for col in COLUMNS]
                               for row in rows]  # fmt: skip
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines) + "\n"


def group_summary(setup: TrainingSetup) -> list[dict[str, Any]]:
    """One dict per optimizer param group: index, label, members, lr, weight_decay, counts."""
    if setup.optimizer is None:
        return []
    members: dict[int, list[str]] = {}
    for name, index in setup.group_of.items():
        members.setdefault(index, []).append(name)
    universe = list(setup.param_shapes)
    rows: list[dict[str, Any]] = []
    for index in range(len(setup.optimizer.param_groups)):
        names = members.get(index, [])
        label = setup.group_labels[index] if index < len(setup.group_labels) else f"group {index}"
        rows.append(
            {
                "group": index,
                "label": label,
                "members": compress_names(names, universe),
                "lr": _group_value(setup, index, "lr"),
                "weight_decay": _group_value(setup, index, "weight_decay"),
                "tensors": len(names),
                "params": sum(math.prod(setup.param_shapes.get(n, ())) for n in names),
            }
        )
    return rows
