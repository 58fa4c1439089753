"""A spec's architecture as a diagram: boxes, clusters and dataflow edges, ready to render.

In: a validated ``Spec``, a depth and whether to expand repeats. Out: a ``Diagram`` — nested
``Cluster``s (containers, Graphs and block instances that ``depth`` opens) holding ``Box``es
(layers, folded containers, statement functions, inputs and outputs) and ``Edge``s labelled
with the tensor shape that flows along them.

What comes from where:
- structure: the resolved tree (module names, block names, which siblings are copies of one
  ``repeat`` — they share the document path they were written at);
- dataflow: a Sequential chains its children; a Graph's edges are its ``torch.fx`` graph (the
  same IR the build compiles), so a residual shows both of its incoming edges;
- shapes: one forward on meta tensors that records every fx node's output, per call;
- parameters, frozen / ``eval`` / tied marks: the model built on meta with its training set-up.
"""

from __future__ import annotations

import copy
import operator
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.fx as fx
import torch.nn as nn

from ..compiler.shapes import output_shapes
from ..compiler.tree import RNode
from ..io.checkpoint import tied_groups
from ..summary import TRACE_BATCH, format_shape
from ..training.freeze import is_eval_frozen

if TYPE_CHECKING:
    from ..spec import Spec

# Above this many boxes a default diagram is folded one level further (a 100-layer model stays readable).
DEFAULT_DEPTH = 2
FOLD_LIMIT = 60


@dataclass
class Box:
    """One drawn node: a layer, a folded container, a statement function, an input or an output."""

    id: str
    label: str
    kind: str  # "module" | "op" | "input" | "output" | "tensor"
    module: str = ""  # module path in the built model ("" for ops and inputs)
    type: str = ""
    params: int = 0
    repeat: int = 1  # > 1: one box standing for N copies of a repeat
    marks: tuple[str, ...] = ()  # "frozen", "eval", "tied"


@dataclass
class Cluster:
    """A container drawn open: its children inside a labelled frame."""

    id: str
    label: str
    module: str
    type: str
    params: int = 0
    repeat: int = 1
    marks: tuple[str, ...] = ()
    items: list[Box | Cluster] = field(default_factory=list)


@dataclass
class Edge:
    src: str
    dst: str
    label: str = ""


@dataclass
class Diagram:
    title: str
    root: Cluster
    edges: list[Edge]
    depth: int
    expanded: bool

    def boxes(self) -> Iterator[Box]:
        stack: list[Box | Cluster] = [self.root]
        while stack:
            item = stack.pop()
            if isinstance(item, Cluster):
                stack.extend(reversed(item.items))
            else:
                yield item

    def clusters(self) -> Iterator[Cluster]:
        stack: list[Box | Cluster] = [self.root]
        while stack:
            item = stack.pop()
            if isinstance(item, Cluster):
                yield item
                stack.extend(reversed(item.items))


class _Recorder(fx.Interpreter):
    """Runs a GraphModule's graph node by node, keeping the output shapes of its first call."""

    def __init__(self, module: fx.GraphModule, store: dict[str, object]) -> None:
        super().__init__(module, garbage_collect_values=True)
        self.store = store

    def run_node(self, n: fx.Node) -> object:
        out = super().run_node(n)
        self.store.setdefault(n.name, output_shapes(out))
        return out


@dataclass
class _Shapes:
    """What one meta forward saw: every module's output shape, and every Graph value's (per Graph module)."""

    modules: dict[str, object] = field(default_factory=dict)
    graph_values: dict[str, dict[str, object]] = field(default_factory=dict)


def _trace_shapes(model: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype) -> _Shapes:
    """Output shapes of the first call of every module and of every fx node in every Graph module."""
    model = copy.deepcopy(model).eval()
    shapes = _Shapes()
    modules = shapes.modules
    for name, module in model.named_modules():
        if isinstance(module, fx.GraphModule):
            store = shapes.graph_values.setdefault(name, {})

            def forward(self: fx.GraphModule, *args: object, _store: dict[str, object] = store) -> object:
                return _Recorder(self, _store).run(*args)

            module.forward = types.MethodType(forward, module)  # type: ignore[method-assign]

        def hook(_m: nn.Module, _i: object, out: object, name: str = name) -> None:
            modules.setdefault(name, output_shapes(out))

        module.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.empty((TRACE_BATCH, *input_shape), dtype=dtype, device="meta"))
    return shapes


def _param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class _Builder:
    def __init__(self, spec: Spec, model: nn.Module, depth: int, expand: bool, shapes: _Shapes) -> None:
        self.spec = spec
        self.model = model
        self.depth = depth
        self.expand = expand
        self.shapes = shapes
        self.edges: list[Edge] = []
        self.modules = dict(model.named_modules())
        self.graphs = {name: m.graph for name, m in self.modules.items() if isinstance(m, fx.GraphModule)}
        self.tied = _tied_modules(model)
        self.counter = 0

    # -- marks and labels ------------------------------------------------------------------------

    def marks(self, name: str) -> tuple[str, ...]:
        module = self.modules.get(name)
        if module is None:
            return ()
        out = []
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            out.append("frozen")
        if is_eval_frozen(module):
            out.append("eval")
        if name in self.tied:
            out.append("tied")
        return tuple(out)

    def params(self, name: str) -> int:
        module = self.modules.get(name)
        return _param_count(module) if module is not None else 0

    def shape_label(self, module_name: str) -> str:
        shape = self.shapes.modules.get(module_name)
        return format_shape(shape) if shape is not None else ""

    def new_id(self, hint: str, cluster: bool = False) -> str:
        """A DOT/Mermaid-safe id; Graphviz draws a subgraph as a frame only when its id starts with "cluster"."""
        self.counter += 1
        safe = "".join(c if c.isalnum() else "_" for c in hint)[:40]
        return f"cluster{self.counter}_{safe}" if cluster else f"n{self.counter}_{safe}"

    # -- the tree --------------------------------------------------------------------------------

    def node(self, r: RNode, level: int, repeat: int = 1) -> tuple[Box | Cluster, list[str], list[str]]:
        """Draw ``r``; returns the item and the box ids that edges into and out of it attach to."""
        short = _short_name(r.name) if r.name else self.spec.name
        opens = (r.children or r.graph is not None) and level < self.depth and r.kind != "layer"
        if r.kind == "layer" and r.children and level < self.depth:
            opens = False  # a layer with nested layer arguments (TransformerEncoder) stays one box
        if not opens:
            box = Box(
                id=self.new_id(r.name or short),
                label=short,
                kind="module",
                module=r.name,
                type=r.type_name,
                params=self.params(r.name),
                repeat=repeat,
                marks=self.marks(r.name),
            )
            return box, [box.id], [box.id]
        cluster = Cluster(
            id=self.new_id(r.name or "root", cluster=True),
            label=short,
            module=r.name,
            type=r.type_name,
            params=self.params(r.name),
            repeat=repeat,
            marks=self.marks(r.name),
        )
        if r.graph is not None and r.name in self.graphs:
            entry, exit_ = self.graph(r, cluster, level)
        elif r.kind in ("Sequential", "ModuleList"):
            entry, exit_ = self.chain(r, cluster, level)
        else:  # ModuleDict / ParameterList / ParameterDict: members without an order of calls
            entry, exit_ = [], []
            for child, count, _ in self.runs(r):
                item, ins, outs = self.node(child, level + 1, count)
                cluster.items.append(item)
                entry += ins
                exit_ += outs
        return cluster, entry, exit_

    def runs(self, r: RNode) -> list[tuple[RNode, int, RNode]]:
        """Children in order, consecutive copies of one ``repeat`` folded into (first copy, count, last copy)."""
        children = list(r.children.values())
        if self.expand:
            return [(c, 1, c) for c in children]
        out: list[tuple[RNode, int, RNode]] = []
        for child in children:
            if out and _same_origin(out[-1][0], child):
                out[-1] = (out[-1][0], out[-1][1] + 1, child)
            else:
                out.append((child, 1, child))
        return out

    def chain(self, r: RNode, cluster: Cluster, level: int) -> tuple[list[str], list[str]]:
        entry: list[str] = []
        previous: list[str] = []
        previous_name = ""
        for child, count, last in self.runs(r):
            item, ins, outs = self.node(child, level + 1, count)
            cluster.items.append(item)
            if not entry:
                entry = ins
            for src in previous:
                for dst in ins:
                    self.edges.append(Edge(src, dst, self.shape_label(previous_name)))
            previous = outs
            previous_name = last.name
        return entry, previous

    def graph(self, r: RNode, cluster: Cluster, level: int) -> tuple[list[str], list[str]]:
        graph = self.graphs[r.name]
        shapes = self.shapes.graph_values.get(r.name, {})
        prefix = r.name + "." if r.name else ""
        exits: dict[str, list[str]] = {}  # fx node name -> box ids its value leaves from
        entry: list[str] = []
        graph_exit: list[str] = []

        def connect(n: fx.Node, dst_ids: list[str]) -> None:
            seen: set[tuple[str, str]] = set()  # h.size(1) and h.device both read h: one edge, not two
            for arg in _node_args(n):
                label = format_shape(shapes[arg.name]) if shapes.get(arg.name) is not None else ""
                for src in exits.get(arg.name, []):
                    for dst in dst_ids:
                        if (src, dst) not in seen:
                            seen.add((src, dst))
                            self.edges.append(Edge(src, dst, label))

        folded = {} if self.expand else _fold_runs(r, graph)
        for n in graph.nodes:
            if n.name in folded:  # a later copy of a folded run: its value leaves from the run's box
                exits[n.name] = exits[folded[n.name]]
                continue
            if n.op == "placeholder":
                box = Box(self.new_id(prefix + n.name), n.name, "input")
                cluster.items.append(box)
                exits[n.name] = [box.id]
                entry.append(box.id)
            elif n.op == "call_module":
                child = _child(r, str(n.target))
                if child is None:
                    continue
                count = 1 + sum(1 for head in folded.values() if head == n.name)
                item, ins, outs = self.node(child, level + 1, count)
                cluster.items.append(item)
                connect(n, ins)
                exits[n.name] = outs
            elif (n.op == "call_function" and n.target is operator.getitem) or (
                n.op in ("call_function", "call_method") and n.name in shapes and not _holds_tensor(shapes[n.name])
            ):  # indexing a tuple, or a non-tensor value (h.size(1)): edges pass through to its users
                exits[n.name] = [i for a in _node_args(n) for i in exits.get(a.name, [])]
            elif n.op in ("call_function", "call_method"):
                box = Box(self.new_id(prefix + n.name), _op_label(n), "op")
                cluster.items.append(box)
                connect(n, [box.id])
                exits[n.name] = [box.id]
            elif n.op == "get_attr":
                box = Box(self.new_id(prefix + n.name), str(n.target), "tensor", module=prefix + str(n.target))
                cluster.items.append(box)
                exits[n.name] = [box.id]
            elif n.op == "output":
                box = Box(self.new_id(prefix + "output"), "output", "output")
                cluster.items.append(box)
                connect(n, [box.id])
                graph_exit = [box.id]
        return entry, graph_exit


def _holds_tensor(shape: object) -> bool:
    """Whether a recorded output (``output_shapes``: a tensor's shape is a tuple of ints) holds a tensor;
    ``h.shape`` or ``h.size(1)`` record only Nones."""
    if isinstance(shape, tuple) and shape and all(isinstance(d, int) for d in shape):
        return True
    if isinstance(shape, (tuple, list)):
        return any(_holds_tensor(s) for s in shape)
    if isinstance(shape, dict):
        return any(_holds_tensor(s) for s in shape.values())
    return shape == ()  # a 0-d tensor


def _short_name(name: str) -> str:
    """``conv1`` for ``layer1.0.conv1``; an index keeps its container (``layer1.0``) so that it reads alone."""
    parts = name.split(".")
    return ".".join(parts[-2:]) if parts[-1].isdigit() and len(parts) > 1 else parts[-1]


def _same_origin(a: RNode, b: RNode) -> bool:
    """Copies of one ``repeat`` were written once: same document path, same use site, same type."""
    return a.path == b.path and a.use_path == b.use_path and a.type_name == b.type_name and a.kind == b.kind


def _fold_runs(r: RNode, graph: fx.Graph) -> dict[str, str]:
    """Chains of calls to consecutive copies of one ``repeat`` (``blocks(h)`` applies a ModuleList in order):
    each later call's fx node name -> the first call's, so the run is drawn as one ×N box."""
    folded: dict[str, str] = {}
    previous: fx.Node | None = None
    for n in graph.nodes:
        if n.op != "call_module":
            previous = None
            continue
        child = _child(r, str(n.target))
        prev_child = _child(r, str(previous.target)) if previous is not None else None
        if (
            previous is not None
            and child is not None
            and prev_child is not None
            and _node_args(n) == [previous]
            and len(previous.users) == 1
            and _same_origin(prev_child, child)
        ):
            folded[n.name] = folded.get(previous.name, previous.name)
        previous = n
    return folded


def _child(r: RNode, target: str) -> RNode | None:
    node: RNode | None = r
    for part in target.split("."):
        if node is None:
            return None
        node = node.children.get(part)
    return node


def _node_args(n: fx.Node) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg((n.args, n.kwargs), lambda a: out.append(a) or a)  # type: ignore[func-returns-value]
    return out


_OP_SYMBOLS = {operator.add: "+", operator.sub: "−", operator.mul: "×", operator.truediv: "÷", operator.matmul: "@"}


def _op_label(n: fx.Node) -> str:
    if n.op == "call_method":
        return f".{n.target}()"
    symbol = _OP_SYMBOLS.get(n.target)  # type: ignore[call-overload]
    if symbol:
        return symbol
    return getattr(n.target, "__name__", str(n.target))


def _tied_modules(model: nn.Module) -> set[str]:
    """Modules owning a parameter that another module shares (``tie:``, or weight sharing)."""
    return {name.rpartition(".")[0] for names in tied_groups(model) for name in names}


def make_diagram(spec: Spec, depth: int | None = None, expand: bool = False) -> Diagram:
    """The diagram of ``spec``'s model. ``depth=None`` picks the deepest level (up to ``DEFAULT_DEPTH``
    and beyond it never) that stays under ``FOLD_LIMIT`` boxes."""
    from ..api import build

    built = build(spec, device="meta")
    inp = spec.document.input
    shapes = _Shapes()
    if inp is not None and len(spec.resolved.root.graph.inputs if spec.resolved.root.graph else [None]) == 1:
        from ..compiler.meta import DTYPES

        shapes = _trace_shapes(built.model, tuple(inp.shape), DTYPES[inp.dtype])

    def at(level: int) -> Diagram:
        builder = _Builder(spec, built.model, level, expand, shapes)
        root, entry, exit_ = builder.node(spec.resolved.root, 0)
        if isinstance(root, Box):  # a single layer: still a frame with a title
            root = Cluster(builder.new_id("root", cluster=True), spec.name, "", root.type, root.params, items=[root])
        if spec.resolved.root.graph is None:  # a Graph draws its own inputs and outputs; a chain gets them here
            source = Box(builder.new_id("input"), "input", "input")
            sink = Box(builder.new_id("output"), "output", "output")
            root.items = [source, *root.items, sink]
            into = format_shape((TRACE_BATCH, *inp.shape)) if inp is not None else ""
            builder.edges += [Edge(source.id, dst, into) for dst in entry]
            builder.edges += [Edge(src, sink.id, builder.shape_label("")) for src in exit_]
        return Diagram(spec.name, root, builder.edges, level, expand)

    if depth is not None:
        return at(depth)
    diagram = at(DEFAULT_DEPTH)
    while diagram.depth > 1 and sum(1 for _ in diagram.boxes()) > FOLD_LIMIT:
        diagram = at(diagram.depth - 1)
    return diagram
