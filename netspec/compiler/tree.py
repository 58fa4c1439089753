"""The resolved tree: what ``resolve`` produces and every later stage reads.

In: nothing (data only). Out: ``RNode`` (one node: kind, module name, document path, catalogue
entry and checked arguments, children, owned tensors, Graph statements), ``RTensor``,
``RStatement``, ``RGraph``, ``Resolved`` (the tree plus the loss, vars and warnings) and
``LEFT_OUT``, the marker for a node whose ``if:`` is false.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..catalog.registry import LayerType
from ..errors import Problem, SpecPath

NodeKind = Literal["layer", "Sequential", "ModuleList", "ModuleDict", "Graph", "ParameterList", "ParameterDict"]


# ``init: {fn: values, data: [...]}``: a tensor's every element written out, row-major (a fixed table no
# formula names: DCT statistics, a blur filter); checked by ``resolve``, filled by ``construct``
VALUES_INIT = "values"


@dataclass
class RTensor:
    """A parameter or buffer owned by a Graph or a ParameterList/Dict."""

    shape: tuple[int, ...]
    init: str | dict[str, Any]
    path: SpecPath
    trainable: bool = True
    persistent: bool = True
    is_buffer: bool = False
    dtype: str | None = None  # a buffer's own dtype (``int64``); None: the build's


@dataclass(slots=True)
class RStatement:
    text: str
    path: SpecPath


@dataclass
class RGraph:
    inputs: list[str]
    statements: list[RStatement]
    outputs: str | list[str] | dict[str, str]
    outputs_path: SpecPath


@dataclass(slots=True)  # no __dict__ per node: a 10,000-layer spec has two trees of them
class RNode:
    """One resolved node: what to build, under which name, and where it was written."""

    kind: NodeKind
    name: str  # module path in the built model ("" for the root)
    path: SpecPath  # where in the document this node was written
    layer: LayerType | None = None
    args: dict[str, Any] = field(default_factory=dict)  # nested layer nodes appear as RNode values
    written: tuple[str, ...] = ()  # the arguments the document gives (inference may add others)
    children: dict[str, RNode] = field(default_factory=dict)
    tensors: dict[str, RTensor] = field(default_factory=dict)
    graph: RGraph | None = None
    block: str | None = None  # the block name when this node is a block instance
    use_path: SpecPath | None = None  # where the block was used, when ``path`` is inside its body
    context: str = ""  # the block instances / repeat copies this node is inside, for messages
    omitted: dict[str, SpecPath] = field(default_factory=dict)  # children left out: name -> path of `if`

    @property
    def type_name(self) -> str:
        if self.block:
            return self.block
        return self.layer.name if self.layer else self.kind

    def arg_path(self, arg: str) -> SpecPath:
        """Where argument ``arg`` was written; the node's own path for one inference added."""
        return (*self.path, arg) if arg in self.written else self.path

    def where(self) -> str:
        """How messages name this node when its document path (a block body, a repeated layer) is shared."""
        return f" (in {self.context})" if self.context else ""

    @property
    def label(self) -> str:
        """The module path as messages say it: ``classifier.fc1``, ``layer 2``, ``the model``."""
        if not self.name:
            return "the model"
        return f"layer {self.name}" if self.name.isdigit() else self.name

    def copy(self) -> RNode:
        """A copy of this subtree whose arguments can be completed without touching this one.

        Arguments and children are copied node by node; what later stages only read (layer
        entries, paths, owned tensor specs, Graph statements) is shared.
        """
        args = self.args.copy()
        for k, v in args.items():
            if isinstance(v, RNode):
                args[k] = v.copy()  # replacing a value of an existing key: safe while iterating
        return RNode(
            self.kind,
            self.name,
            self.path,
            self.layer,
            args,
            self.written,
            {k: c.copy() for k, c in self.children.items()} if self.children else {},
            self.tensors.copy(),
            self.graph,
            self.block,
            self.use_path,
            self.context,
            self.omitted,
        )


# What ``Resolver.node`` returns for a node whose ``if:`` is false.
LEFT_OUT = RNode("layer", "", ())


@dataclass
class Resolved:
    """The resolved model tree plus what ``infer`` and ``build`` need from the top level."""

    root: RNode
    loss: RNode | None
    vars: dict[str, Any]
    warnings: list[Problem]


__all__ = ["LEFT_OUT", "NodeKind", "RGraph", "RNode", "RStatement", "RTensor", "Resolved"]
