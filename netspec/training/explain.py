"""``--explain`` and the build summary: what the training sections did to each parameter.

In: a ``TrainingSetup``. Out: ``explain_rows`` (one dict per parameter: name, shape, the
``file:line`` of the init rule that set it or ``"default"``, frozen, param-group index or
``"-"``, lr, weight_decay), ``format_explain`` (those rows as an aligned text table) and
``group_summary`` (one dict per optimizer param group, its members compressed to module
prefixes and globs).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .patterns import select
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
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def format_explain(rows: list[dict[str, Any]]) -> str:
    """``rows`` as an aligned text table with a header line, ending in a newline."""
    table = [list(COLUMNS)] + [[_cell(row.get(col, "")) for col in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines) + "\n"


def compress_names(members: Iterable[str], universe: Iterable[str]) -> list[str]:
    """The fewest module prefixes (then ``*.leaf`` globs) that cover ``members`` exactly.

    ``universe`` is every parameter name; a prefix is used only when everything under it is a
    member. ``["*"]`` when ``members`` is everything.
    """
    chosen = set(members)
    names = list(universe)
    if not chosen:
        return []
    if set(names) <= chosen:
        return ["*"]
    out: list[str] = []

    def walk(prefix: str, under: list[str]) -> None:
        inside = [n for n in under if n in chosen]
        if not inside:
            return
        if len(inside) == len(under):
            out.append(prefix)
            return
        children: dict[str, list[str]] = {}
        for name in under:
            rest = name[len(prefix) + 1 :] if prefix else name
            child = (prefix + "." if prefix else "") + rest.split(".")[0]
            children.setdefault(child, []).append(name)
        for child, sub in children.items():
            walk(child, sub)

    walk("", names)
    return _collapse_leaves(out, chosen, names)


def _collapse_leaves(entries: list[str], chosen: set[str], names: list[str]) -> list[str]:
    """Replace three or more ``x.y.bias`` entries by a ``*.bias``-style glob when that is exact."""
    leaves: dict[str, list[str]] = {}
    for entry in entries:
        if entry in chosen and "." in entry:
            leaves.setdefault(entry.rsplit(".", 1)[1], []).append(entry)
    result = list(entries)
    for leaf, group in leaves.items():
        if len(group) < 3:
            continue
        candidates = [f"*.{leaf}", *sorted({f"{g.split('.', 1)[0]}.*.{leaf}" for g in group})]
        for glob in candidates:
            hits = set(select(glob, names))
            if hits <= chosen and set(group) & hits:
                covered = [e for e in result if e in hits]
                if len(covered) >= 2:
                    first = result.index(covered[0])
                    result = [e for e in result if e not in hits]
                    result.insert(min(first, len(result)), glob)
    return result


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
