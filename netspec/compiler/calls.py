"""What inference saw at every call: each layer's input and output shapes, each Graph statement's function.

In: the calls ``infer`` makes on meta tensors (a layer called with arguments, a Graph statement
run). Out: a ``CallLog``: per module name, one ``LayerCall`` for every time the layer ran (its
input and output shapes), and per Graph, one ``StatementCall`` for every statement that ran (its
fx target, its arguments with each tensor replaced by a ``TensorShape``, its output shapes).
The summary counts multiply-adds from it and follows the batch dimension across two probes,
without running the model again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx

from .shapes import output_shapes


@dataclass(frozen=True, slots=True)
class TensorShape:
    """A tensor argument of a statement, as its shape (a ``torch.Size`` argument stays a ``torch.Size``)."""

    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LayerCall:
    inputs: tuple[Any, ...]  # the shapes of the positional arguments, as ``output_shapes`` writes them
    output: Any
    # True when the module's own forward ran on meta tensors (every layer; a Sequential or Graph called a
    # second time); False when inference walked a Sequential's steps or a Graph's statements itself.
    forward: bool = True


@dataclass(frozen=True, slots=True)
class StatementCall:
    target: Callable[..., Any] | str  # the fx node's target: a function, or a tensor method's name
    args: tuple[Any, ...]  # tensors as TensorShape, other values as given
    kwargs: dict[str, Any]
    output: Any


def _shapes_of(value: Any) -> Any:
    return fx.node.map_aggregate(value, lambda v: TensorShape(tuple(v.shape)) if isinstance(v, torch.Tensor) else v)


@dataclass
class CallLog:
    layers: dict[str, list[LayerCall]] = field(default_factory=dict)
    statements: dict[str, list[StatementCall]] = field(default_factory=dict)

    def layer(self, name: str, args: tuple[Any, ...], out: Any, forward: bool = True, shapes: Any = None) -> LayerCall:
        """Log a call of ``name`` and return its record; ``shapes``: ``output_shapes(out)`` when the caller has
        it already."""
        inputs = tuple([output_shapes(a) for a in args])
        call = LayerCall(inputs, output_shapes(out) if shapes is None else shapes, forward)
        self.layers.setdefault(name, []).append(call)
        return call

    def again(self, name: str, call: LayerCall) -> None:
        """Log a call of ``name`` whose record is ``call`` (made for another call with the same input and output
        shapes: a record is immutable, so one is shared)."""
        self.layers.setdefault(name, []).append(call)

    def statement(self, graph: str, n: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        call = StatementCall(n.target, _shapes_of(args), _shapes_of(kwargs), output_shapes(out))  # type: ignore[arg-type]
        self.statements.setdefault(graph, []).append(call)
