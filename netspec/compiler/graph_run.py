"""A Graph node's compiled statements run on meta tensors, node by node, during inference.

In: the Graph's fx graph (from ``graph_compile``), its own tensors and the call's arguments. Out: the
Graph's output (meta tensors), or ``FAILED`` once a problem has been reported: a failing statement is
reported at its own line with the shapes it was given, a read of a child's tensor that does not exist
with "did you mean". Children are run through ``Inferrer.node``; ``GraphRun`` is the part of
``infer.Inferrer`` that does this.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.fx as fx

from ..errors import ProblemList, did_you_mean, first_line
from ..frontend.source import Source
from .allowlists import route
from .calls import CallLog
from .function_shapes import statement_value
from .inferred import Built, real
from .meta import Producer, shape_text, tensors_of
from .shapes import ShapeRuleBug
from .tree import RNode

FAILED: Any = object()  # a Graph run stopped at a reported problem (None is a legitimate output)


class GraphRun:
    """Runs a Graph's statements for ``Inferrer``, which provides the attributes below."""

    source: Source
    problems: ProblemList
    calls: CallLog
    problem: Callable[..., None]
    mark: Callable[[Any, Producer], None]
    finish: Callable[[RNode], Built | None]
    node: Callable[..., tuple[Built | None, Any]]

    def run_graph(
        self,
        node: RNode,
        graph: fx.Graph,
        tensors: Mapping[str, torch.Tensor],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Any:
        """The Graph's output on meta tensors, or ``FAILED`` once a problem has been reported."""
        graph_def = node.graph
        if graph_def is None:
            raise RuntimeError(f"{node.name}: a Graph node without statements")
        if len(args) + len(kwargs) != len(graph_def.inputs):
            self.problem(
                node,
                f"Graph takes {len(graph_def.inputs)} input(s) ({', '.join(graph_def.inputs)}), "
                f"called with {len(args) + len(kwargs)}",
            )
            return FAILED
        env: dict[fx.Node, Any] = {}
        value_of = env.__getitem__
        inputs = dict(zip(graph_def.inputs, args, strict=False)) | dict(kwargs)
        prefix = f"{node.name}." if node.name else ""
        unplaced = (node.path, "")
        map_arg = fx.node.map_arg
        for n in graph.nodes:
            stmt_path, stmt_text = n.meta.get("netspec", unplaced)
            op = n.op
            try:
                if op == "call_module":  # the commonest: a layer called (inferred through ``Inferrer.node``)
                    a = map_arg(n.args, value_of) if n.args else ()
                    kw = map_arg(n.kwargs, value_of) if n.kwargs else {}
                    out = env[n] = self.run_node(node, n, a, kw, prefix)
                    if out is None:
                        return FAILED  # the child reported its own problem
                elif op == "placeholder":
                    env[n] = inputs[n.target]
                elif op == "get_attr":
                    target = str(n.target)
                    if target == "training":
                        env[n] = False
                    elif target in tensors:
                        env[n] = tensors[target]
                    else:
                        env[n] = self.child_value(node, target, stmt_path, stmt_text)
                        if env[n] is None:
                            return FAILED
                elif op == "output":
                    return map_arg(n.args[0], value_of)
                else:
                    a = map_arg(n.args, value_of) if n.args else ()
                    kw = map_arg(n.kwargs, value_of) if n.kwargs else {}
                    out = env[n] = self.run_node(node, n, a, kw, prefix)
                    self.calls.statement(node.name, n, a, kw, out)
                    self.mark(out, Producer(f"statement '{stmt_text.strip()}'"))
            except ShapeRuleBug:
                raise
            except Exception as err:  # noqa: BLE001 - a statement calls torch functions and user modules: reported
                desc = ", ".join(shape_text(x.shape) for x in tensors_of((a, kw))) if n.op != "placeholder" else ""
                self.problems.add(
                    self.source.problem(
                        stmt_path,
                        f"'{stmt_text.strip()}' failed"
                        + (f" on inputs {desc}" if desc else "")
                        + f": {first_line(err)}"
                        + node.where(),
                    )
                )
                return FAILED
        return FAILED

    def child_value(self, node: RNode, target: str, stmt_path: Any, stmt_text: str) -> Any:
        """A ``get_attr`` beyond the Graph's own tensors: a child (``route``'s ModuleDict), or a child's tensor
        (``qkv.weight``; the child is built first if forward reads it before calling it). None: reported."""
        parts, owner = target.split("."), node
        while parts and parts[0] in owner.children:
            owner = owner.children[parts.pop(0)]
        module, name = (self.finish(owner) if parts else None), ".".join(parts)
        if module is None:
            return None if parts else owner  # a child that could not be built reported its own problem
        module = real(module)
        found = dict(module.named_parameters()) | dict(module.named_buffers())
        if name in found:
            return found[name]
        message = f"'{stmt_text.strip()}': {owner.label} ({owner.type_name}) has no parameter or buffer {name!r}"
        has = f"; it has {', '.join(found)}" if found else ""
        self.problems.add(self.source.problem(stmt_path, message + has, hint=did_you_mean(name, found) or None))
        return None

    def child_for(self, node: RNode, target: str) -> RNode:
        current = node
        for part in target.split("."):
            current = current.children[part]
        return current

    def run_node(self, node: RNode, n: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any], prefix: str) -> Any:
        if n.op == "call_module":
            child = self.child_for(node, str(n.target))
            _, out = self.node(child, args, kwargs)
            return out
        if n.target is route:
            holder, key, *rest = args
            outs = {k: self.node(c, tuple(rest), kwargs)[1] for k, c in holder.children.items()}
            if isinstance(key, str) and key in outs:
                return outs[key]
            return next(iter(outs.values()), None)
        return statement_value(n.op, n.target, args, kwargs)


__all__ = ["FAILED", "GraphRun"]
