"""An fx ``Graph`` as plain records, and back: the form in which Graph modules pickle.

In: a ``torch.fx.Graph``. Out: a tuple of ``NodeRecord`` (op, name, target, args and kwargs
with every node reference replaced by a ``NodeRef``, the type annotation and the node's
meta), all picklable by value or by reference (targets are torch/operator/builtin functions
or attribute names), and ``graph_from_records`` to rebuild an equal graph.

Why not fx's own pickling: ``GraphModule.__reduce__`` stores the generated Python code and
re-traces it on load, and re-tracing is not the identity (a buffer slice such as
``self.mask[:, :T]`` traces into different nodes, or fails). Records carry the graph itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.fx as fx


@dataclass(frozen=True)
class NodeRef:
    """A reference, inside a record's args, to the earlier node of that name."""

    name: str


@dataclass(frozen=True)
class NodeRecord:
    op: str
    name: str
    target: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    type: Any
    meta: dict[str, Any]


def graph_records(graph: fx.Graph) -> tuple[NodeRecord, ...]:
    """Every node of ``graph`` in order, node references replaced by ``NodeRef``s."""

    def ref(node: fx.Node) -> NodeRef:
        return NodeRef(node.name)

    return tuple(
        NodeRecord(
            node.op,
            node.name,
            node.target,
            fx.node.map_arg(node.args, ref),
            fx.node.map_arg(node.kwargs, ref),
            node.type,
            dict(node.meta),
        )
        for node in graph.nodes
    )


def graph_from_records(records: tuple[NodeRecord, ...]) -> fx.Graph:
    """The graph ``graph_records`` described: same ops, names, targets, arguments and meta."""
    graph = fx.Graph()
    env: dict[str, fx.Node] = {}

    def node_of(value: Any) -> Any:
        return env[value.name] if isinstance(value, NodeRef) else value

    for rec in records:
        args = fx.node.map_aggregate(rec.args, node_of)
        kwargs = fx.node.map_aggregate(rec.kwargs, node_of)
        node = graph.create_node(rec.op, rec.target, args, kwargs, name=rec.name, type_expr=rec.type)
        if node.name != rec.name:
            raise ValueError(f"graph node {rec.name!r} came back as {node.name!r}")
        node.meta.update(rec.meta)
        env[rec.name] = node
    return graph


__all__ = ["NodeRecord", "NodeRef", "graph_from_records", "graph_records"]
