"""What a Graph statement may call: each child's kind, its own children and its forward's inputs.

In: a resolved node (``RNode``) whose children a Graph's statements call. Out: a ``Child`` per
child (kind, grandchildren, forward parameter names and how many are required, the parameters and
buffers a statement may read as ``child.name``), and
``check_arity``, which turns a call with the wrong inputs into a ``StatementError`` (message,
column, hint) that ``statements`` places at the statement.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import did_you_mean
from .tree import RNode


class StatementError(Exception):
    """A statement uses something outside the language; carries the column and a hint."""

    def __init__(self, message: str, col: int = 0, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.col, self.hint = message, col, hint


@dataclass(slots=True)
class Child:
    """What the statement compiler needs to know about a child: its kind and its own children."""

    kind: str
    children: Mapping[str, Child]
    inputs: tuple[str, ...] | None = None  # forward's parameter names when known; None: unchecked
    required: int = 0  # how many of them have no default
    tensors: frozenset[str] | None = frozenset()  # its own parameters and buffers; None: a layer's, known once built


def _forward_inputs(node: RNode) -> tuple[tuple[str, ...] | None, int]:
    if node.kind == "Graph" and node.graph is not None:
        return tuple(node.graph.inputs), len(node.graph.inputs)
    if node.kind == "Sequential":
        return None, 0  # takes whatever its first step takes
    if node.layer is None:
        return None, 0
    return _signature_inputs(node.layer.cls.forward)


@functools.lru_cache(maxsize=1024)  # one signature per layer class, not per layer: 10,000 layers, a few classes
def _signature_inputs(forward: Callable[..., Any]) -> tuple[tuple[str, ...] | None, int]:
    try:
        params = list(inspect.signature(forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return None, 0
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return None, 0
    required = sum(1 for p in params if p.default is inspect.Parameter.empty)
    return tuple(p.name for p in params), required


def _own_tensors(node: RNode) -> frozenset[str] | None:
    return None if node.kind == "layer" else frozenset(node.tensors)


def describe_children(node: RNode) -> dict[str, Child]:
    return {
        k: Child(v.kind, describe_children(v), *_forward_inputs(v), _own_tensors(v)) for k, v in node.children.items()
    }


def check_arity(path: str, child: Child, args: tuple[Any, ...], kwargs: Mapping[str, Any], col: int) -> None:
    if child.inputs is None:
        return
    unknown = [k for k in kwargs if k not in child.inputs]
    if unknown:
        raise StatementError(
            f"{path} has no input {unknown[0]!r}; it takes ({', '.join(child.inputs)})",
            col,
            did_you_mean(unknown[0], child.inputs) or None,
        )
    given = len(args) + len(kwargs)
    if len(args) > len(child.inputs) or given < child.required:
        raise StatementError(
            f"{path} takes {child.required}"
            + (f" to {len(child.inputs)}" if len(child.inputs) != child.required else "")
            + f" input(s) ({', '.join(child.inputs)}), got {given}",
            col,
        )


__all__ = ["Child", "StatementError", "check_arity", "describe_children"]
