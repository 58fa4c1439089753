"""Tracing custom modules for ``netspec.emit``: ``forward`` -> a ``torch.fx`` graph -> Graph statements.

In: an ``nn.Module`` whose class is not in the layer catalogue, and its path in the model (for
messages). Out: a ``GraphBody`` (inputs, forward statements, outputs, notes) made by
``emit_graph.render_graph`` from the module's fx graph: a ``GraphModule`` (netspec's own Graph
modules included) is read as it is; any other module is traced with ``torch.fx`` with every
submodule as a leaf, once in eval and once in training mode, so that a ``forward`` whose
computation depends on ``self.training`` is refused (only dropout may follow the mode; such a
dropout is written without ``training=``, as the Graph language adds it). Arguments with simple
defaults are fixed to them (and reported). A forward that cannot be traced — control flow on
tensor values, calls of unregistered modules — raises ``EmitError`` naming the module path, its
class and the reason.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch.fx as fx
import torch.nn as nn

from ..compiler.allowlists import MODE_ARGUMENTS
from ..errors import EmitError, first_line
from .layers import where
from .lint import ModelWarning
from .render import GraphBody, render_graph
from .spelling import fixed_inputs, function_name

TRACE_HINT = (
    "netspec emits a custom module by symbolic tracing (torch.fx), which cannot follow Python control flow "
    "that depends on tensor values; register the class with netspec.register to emit it as a layer, or move "
    "the data-dependent part into a registered layer"
)


class _LeafTracer(fx.Tracer):
    """Every submodule is a leaf: the traced module's own forward is the only code followed."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def _signature_key(graph: fx.Graph) -> list[tuple[Any, ...]]:
    """A comparable form of a graph, with dropout's ``training`` flag left out."""
    index = {n: i for i, n in enumerate(graph.nodes)}

    def norm(v: Any) -> Any:
        return fx.node.map_arg(v, lambda n: ("%", index[n]))

    key = []
    for n in graph.nodes:
        args, kwargs = n.args, dict(n.kwargs)
        at = _mode_index(n)
        if at is not None:
            kwargs.pop("training", None)
            args = tuple(v for i, v in enumerate(args) if i != at)
        key.append((n.op, str(n.target), repr(norm(args)), repr(norm(kwargs))))
    return key


def _mode_index(n: fx.Node) -> int | None:
    """Where a function with a ``training`` argument (dropout, batch_norm) takes it; None for other nodes."""
    if n.op != "call_function":
        return None
    return MODE_ARGUMENTS.get(function_name(n.target) or "")


def _mode_value(n: fx.Node, index: int) -> Any:
    return n.kwargs.get("training", n.args[index] if len(n.args) > index else None)


def trace(module: nn.Module, path: str) -> tuple[fx.Graph, dict[fx.Node, Any], list[ModelWarning]]:
    """Trace ``module.forward`` (eval and train mode); returns the graph, dropout ``training`` values, notes.

    A dropout whose ``training`` follows ``self.training`` maps to ``None`` (the Graph language adds it).
    """
    notes: list[ModelWarning] = []
    try:
        signature = inspect.signature(module.forward)
    except (TypeError, ValueError) as err:
        raise EmitError(f"{where(path, module)}: cannot read forward's signature: {err}") from None
    concrete: dict[str, Any] = {}
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            stars = "**" if p.kind is p.VAR_KEYWORD else "*"
            raise EmitError(
                f"{where(path, module)}: forward takes {stars}{p.name}; a Graph needs named inputs "
                f"(write forward(self, x, y) instead of forward(self, {stars}{p.name}))"
            )
    for name, (_, default) in fixed_inputs(module).items():
        concrete[name] = default
        notes.append(
            ModelWarning(
                path,
                f"{type(module).__name__}.forward argument {name!r} is fixed to its default {default!r}: "
                "Graph inputs have no defaults",
                "pass the value through a layer argument if it must vary",
            )
        )
    free = [p.name for p in signature.parameters.values() if p.name not in concrete]
    if signature.parameters and not free:
        shown = ", ".join(f"{k}={v!r}" for k, v in concrete.items())
        raise EmitError(
            f"{where(path, module)}: every forward input has a default ({shown}); fixing them to their defaults "
            "would leave a Graph with no inputs, which builds but does not compute the model"
            "\n    hint: give the tensor inputs no default (forward(self, x, mask=None)), or wrap the module in one "
            "whose forward takes the tensors"
        )
    graphs: dict[bool, fx.Graph] = {}
    mode = module.training
    try:
        for training in (False, True):
            module.training = training
            try:
                graphs[training] = _LeafTracer().trace(module, concrete_args=concrete or None)
            except Exception as err:  # the user's forward runs under the tracer and may raise anything
                reason = first_line(err)
                if "is not installed as a submodule" in reason:
                    raise EmitError(
                        f"{where(path, module)}: forward calls a module that is not registered ({reason}); "
                        "modules kept in a plain list, dict or tuple are invisible to PyTorch"
                        "\n    hint: keep them in nn.ModuleList / nn.ModuleDict "
                        "(netspec check lists every such attribute)"
                    ) from err
                raise EmitError(
                    f"{where(path, module)}: forward cannot be traced: {reason}\n    hint: {TRACE_HINT}"
                ) from err
    finally:
        module.training = mode
    if _signature_key(graphs[False]) != _signature_key(graphs[True]):
        raise EmitError(
            f"{where(path, module)}: forward computes different things in training and eval mode "
            "(it branches on self.training), which a Graph cannot express; only dropout may depend on the mode"
        )
    modes: dict[fx.Node, Any] = {}
    for evaluated, trained in zip(graphs[False].nodes, graphs[True].nodes, strict=True):
        index = _mode_index(evaluated)
        if index is not None:
            e, t = _mode_value(evaluated, index), _mode_value(trained, index)
            modes[evaluated] = None if (e is False and t is True) else e
    return graphs[False], modes, notes


def graph_body(module: nn.Module, path: str, traced: Callable[[nn.Module], bool] | None = None) -> GraphBody:
    """Trace (or, for a GraphModule, read) ``module``'s forward and render it as Graph statements;
    ``traced(child)``: whether a child is itself emitted by tracing (see ``render_graph``)."""
    if isinstance(module, fx.GraphModule):
        return render_graph(module.graph, module, path, traced=traced)
    graph, modes, notes = trace(module, path)
    body = render_graph(graph, module, path, modes, traced)
    body.notes = notes + body.notes
    return body


__all__ = ["TRACE_HINT", "graph_body", "trace"]
