"""Stage 4: infer — shapes propagated on meta tensors, omitted sizes filled in, every layer checked.

In: a resolved tree (``RNode``) and, optionally, the per-sample input shape. Out: a new tree
(the resolved one is left unchanged) with every argument final (``in_channels``,
``in_features``, ``num_features``, ... taken from the input), a complete model built on the
``meta`` device (no memory, no init cost), the compiled fx graphs of every Graph node, and
each module's output shape. Problems —
mismatched sizes naming both layers, impossible arguments, failing statements — are
collected and raised together as one ``SpecError``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import is_lazy

from ..catalog.checks import check_layer
from ..errors import Problem, ProblemList, SpecError, did_you_mean, first_line
from ..frontend.source import Source
from .allowlists import FACTORIES, route
from .batchdims import label_problems
from .calls import CallLog
from .construct import assemble, build_tree, construct_layer, copy_graphs, make_tensor
from .fill_sizes import fill_sizes
from .function_shapes import function_output
from .graph_compile import compile_statements
from .input_dtypes import dtype_message, input_dtype_problem
from .meta import (
    DTYPES,
    INFERABLE,
    META,
    Producer,
    cache_key,
    kwargs_text,
    shape_text,
    tensors_of,
)
from .sequence_shapes import sequence_output
from .shapes import ShapeRuleBug, SkipInit, layer_output, output_shapes
from .tree import RNode

FAILED: Any = object()  # a Graph run stopped at a reported problem (None is a legitimate output)


class Later:
    """A container (Sequential, ModuleList, ModuleDict, Graph) inference checked, assembled only if a module is
    needed: a second call of it, a layer taking it as an argument. Validation reads only shapes, and
    assembling a Graph generates and compiles its ``forward`` (a third of validating a 10,000-statement
    Graph); ``build`` and ``Inferred.meta_model`` assemble it from the same tree and graphs."""

    __slots__ = ("_make", "_module")

    def __init__(self, make: Callable[[], nn.Module]) -> None:
        self._make: Callable[[], nn.Module] | None = make
        self._module: nn.Module | None = None

    def get(self) -> nn.Module:
        if self._module is None:
            if self._make is None:
                raise RuntimeError("a deferred module is assembled once")
            make, self._make = self._make, None
            self._module = make()
        return self._module


Built = nn.Module | Later  # a built layer, or a container assembled on demand
Ran = tuple[Built | None, Any]  # a node's module and its output


def real(module: Built) -> nn.Module:
    """The module itself (a deferred container is assembled now)."""
    return module.get() if isinstance(module, Later) else module


@dataclass
class Inferred:
    """What inference hands to the builder and the summary."""

    root: RNode
    graphs: dict[str, fx.Graph]
    shapes: dict[str, Any] = field(default_factory=dict)  # module name -> output shape(s)
    warnings: list[Problem] = field(default_factory=list)
    tensors: dict[str, list[tuple[int, torch.dtype]]] = field(default_factory=dict)  # module -> (numel, dtype)
    lazy_inputs: dict[str, tuple[torch.Size, ...]] = field(default_factory=dict)  # lazy layer -> its input shapes
    calls: CallLog = field(default_factory=CallLog)  # every layer call and Graph statement, with shapes
    _meta_model: nn.Module | None = field(default=None, repr=False)

    @property
    def meta_model(self) -> nn.Module:
        """The whole model on the meta device (built on first use: inference shares identical layers)."""
        if self._meta_model is None:
            with SkipInit():
                self._meta_model = build_tree(self.root, META, None, copy_graphs(self.graphs), self.lazy_inputs)
        return self._meta_model


class Inferrer:
    def __init__(self, source: Source, problems: ProblemList, dtype: torch.dtype | None = None) -> None:
        self.source = source
        self.dtype = dtype  # the weights' dtype (build's dtype=); None: float32
        self.problems = problems
        self.graphs: dict[str, fx.Graph] = {}
        self.shapes: dict[str, Any] = {}
        self.built: dict[str, Built] = {}
        self.cache: dict[Any, nn.Module] = {}
        self.has_input = False
        self.tensors: dict[str, list[tuple[int, torch.dtype]]] = {}
        self.sizes_of: dict[int, list[tuple[int, torch.dtype]]] = {}  # id(meta module) -> its tensor sizes
        self.calls = CallLog()
        self.producers: dict[int, Producer] = {}
        self.lazy_inputs: dict[str, tuple[torch.Size, ...]] = {}
        self._alive: list[Any] = []  # keeps tensors alive so id() keys stay unique

    # -- helpers ------------------------------------------------------------------------------
    def problem(self, node: RNode, message: str, arg: str | None = None, hint: str | None = None) -> None:
        path = node.arg_paths.get(arg, node.path) if arg else node.path
        self.problems.add(self.source.problem(path, message + node.where(), hint=hint))

    def producer(self, t: torch.Tensor) -> Producer:
        return self.producers.get(id(t), Producer("the input"))

    def mark(self, value: Any, producer: Producer) -> None:
        for t in tensors_of(value):
            self.producers[id(t)] = producer
            self._alive.append(t)

    # -- nodes --------------------------------------------------------------------------------
    def node(self, node: RNode, args: tuple[Any, ...] | None, kwargs: Mapping[str, Any] | None = None) -> Ran:
        """Build ``node`` on meta (inferring from ``args`` when given) and run it; returns (module, output)."""
        if node.name in self.built and node.name:
            module = self.built[node.name]
            return module, self.call(node, real(module), args, kwargs) if args is not None else None
        if args is not None and node.kind in ("ModuleList", "ModuleDict", "ParameterList", "ParameterDict"):
            self.problem(
                node,
                f"a {node.kind} has no forward, so it cannot take the input; "
                "call its elements from a Graph, or drop input.shape",
            )
            return None, None
        module: Built | None
        if node.kind == "layer":
            module = self.layer(node, args)
        elif node.kind == "Sequential" and args is not None:
            return self.walked(node, args, self.sequential(node, args, kwargs))
        elif node.kind == "Graph":
            return self.walked(node, args, self.graph(node, args, kwargs))
        else:
            module = self.container(node)
        if module is None:
            return None, None
        self.built[node.name] = module
        return module, self.call(node, real(module), args, kwargs) if args is not None else None

    def walked(self, node: RNode, args: tuple[Any, ...] | None, result: Ran) -> Ran:
        """Log a Sequential or Graph that inference ran step by step (its input and output shapes)."""
        if args is not None and result[0] is not None:
            self.calls.layer(node.name, args, result[1], forward=False)
        return result

    def layer(self, node: RNode, args: tuple[Any, ...] | None) -> nn.Module | None:
        layer = node.layer
        if layer is None:
            raise RuntimeError(f"{node.name}: a layer node without a catalogue entry")
        first = next((a for a in (args or ()) if isinstance(a, torch.Tensor)), None)
        written = len(node.args)  # fill_in only adds arguments
        if first is not None and not self.fill_in(node, args or (), first):
            return None
        missing = layer.missing(node.args)
        if missing:
            inferable = [m for m in missing if m in INFERABLE]
            hint = None
            if inferable and first is None:
                hint = (
                    "it is not reached from input.shape (an unused layer, or an element called nowhere): write it"
                    if self.has_input
                    else "give input.shape at the top level so it can be inferred"
                )
            self.problem(node, f"{layer.name} is missing required argument(s) {', '.join(missing)}", hint=hint)
            return None
        # resolve checked the arguments as written; only what inference added can make a new finding.
        found = check_layer(layer, node.args) if len(node.args) != written else []
        for arg, message, hint in found:
            self.problem(node, message, arg, hint)
        if found:
            return None
        nested: dict[str, nn.Module] = {}
        for key, value in node.args.items():
            if isinstance(value, RNode):
                built, _ = self.node(value, args if value.kind == "layer" else None)
                if built is None:
                    return None
                nested[key] = real(built)
        # Layers with the same type and arguments behave the same on meta tensors: build one of each.
        key = None if nested or _lazy_class(layer.cls) else cache_key(node)
        module = self.cache.get(key) if key is not None else None
        if module is None:
            try:
                with SkipInit():
                    module = construct_layer(node, META, self.dtype, nested)
            except Exception as err:  # noqa: BLE001 - a registered class's __init__ may raise anything; reported
                self.problem(node, f"{layer.name}({kwargs_text(node.args)}) cannot be constructed: {first_line(err)}")
                return None
            if key is not None:
                self.cache[key] = module
        # A module argument (TransformerEncoder's encoder_layer) is a constructor template: torch deep-copies
        # it into `layers` and keeps no reference. What the layer registers is in its own record; the
        # templates' records would count weights the model does not have.
        for value in node.args.values():
            if isinstance(value, RNode):
                self.drop_tensors(value.name)
        self.record_tensors(node.name, module)
        return module

    def drop_tensors(self, name: str) -> None:
        """Forget the recorded sizes of ``name`` and everything under it."""
        prefix = name + "."
        for key in [k for k in self.tensors if k == name or k.startswith(prefix)]:
            del self.tensors[key]

    def record_tensors(self, name: str, module: nn.Module) -> None:
        """Sizes of a module's parameters and buffers, for the memory check before allocating."""
        # Lazy modules' tensors have no size until their first forward; they count as nothing here.
        sizes = self.sizes_of.get(id(module))
        if sizes is None:  # identical layers share one meta module (``self.cache``): measure it once
            sizes = [(t.numel(), t.dtype) for t in (*module.parameters(), *module.buffers()) if not is_lazy(t)]
            if not _is_lazy(module):
                self.sizes_of[id(module)] = sizes
        self.tensors[name] = sizes

    def fill_in(self, node: RNode, args: tuple[Any, ...], x: torch.Tensor) -> bool:
        """Infer omitted sizes from the input, and check given ones against it; False after a mismatch."""
        return fill_sizes(
            node, args, x, self.producer, lambda message, arg, hint: self.problem(node, message, arg, hint)
        )

    def call(self, node: RNode, module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any] | None) -> Any:
        lazy = _is_lazy(module)
        wrong_dtype = input_dtype_problem(module, args, kwargs)
        if wrong_dtype is not None:
            message, hint = dtype_message(wrong_dtype, self.producer(wrong_dtype.tensor).name)
            self.problem(node, message, hint=hint)
            return None
        try:
            fast = None if kwargs else layer_output(module, args)
            if fast is None:
                fast = sequence_output(module, args, kwargs or {})
            out = fast if fast is not None else module(*args, **(kwargs or {}))
        except ShapeRuleBug:
            raise  # netspec's own bug: the internal-error path, not the user's problem list
        except Exception as err:  # noqa: BLE001 - the layer's forward (a registered class) may raise anything
            inputs = ", ".join(
                f"{shape_text(a.shape)} from {self.producer(a).name}" for a in args if isinstance(a, torch.Tensor)
            )
            self.problem(node, f"{node.type_name} failed on input {inputs or 'of this call'}: {first_line(err)}")
            return None
        self.shapes[node.name] = output_shapes(out)
        self.calls.layer(node.name, args, out)
        if lazy:
            # Its first input fixed its sizes: the real build materialises the same ones (construct.materialize_lazy).
            self.lazy_inputs[node.name] = tuple(a.shape for a in args if isinstance(a, torch.Tensor))
            self.record_tensors(node.name, module)
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        flattening = (
            isinstance(out, torch.Tensor)
            and first is not None
            and out.dim() == 2
            and first.dim() > 2
            and out.shape[1] == first[0].numel()
        )
        self.mark(
            out,
            Producer(node.label, tuple(first.shape[1:]) if flattening and first is not None else None),
        )
        if flattening and first is not None and self.producer(first).name != "the input":
            self.mark(out, Producer(self.producer(first).name, tuple(first.shape[1:])))
        return out

    def sequential(self, node: RNode, args: tuple[Any, ...], kwargs: Mapping[str, Any] | None) -> Ran:
        call_args: tuple[Any, ...] | None = args
        call_kwargs = kwargs
        # An empty Sequential is the identity (a ResNet shortcut written as `nn.Sequential()`).
        value: Any = args[0] if not node.children and len(args) == 1 and not kwargs else None
        modules: dict[str, Built] = {}
        for child in node.children.values():
            if child.kind in ("ModuleList", "ModuleDict", "ParameterList", "ParameterDict"):
                self.problems.add(
                    self.source.problem(
                        child.path,
                        f"a {child.kind} has no forward and cannot be a step "
                        "of a Sequential; call its elements from a Graph",
                    )
                )
                return None, None
            reported = len(self.problems.errors)
            module, value = self.node(child, call_args, call_kwargs)
            if module is None or len(self.problems.errors) > reported:
                return None, None  # later steps have no input to infer from; their errors would be noise
            modules[child.name.rsplit(".", 1)[-1]] = module
            # The first step takes the Sequential's own inputs; each later one the previous output.
            call_args, call_kwargs = (value,), None
        seq = Later(lambda: assemble(node, {k: real(m) for k, m in modules.items()}, {}, None))
        self.built[node.name] = seq
        if value is not None:
            self.shapes[node.name] = output_shapes(value)
        return seq, value

    def container(self, node: RNode) -> Built | None:
        children = {k: self.finish(c) for k, c in node.children.items()}
        if any(m is None for m in children.values()):
            return None
        tensors = self.owned_tensors(node)
        if tensors is None:
            return None
        if node.kind in ("ParameterList", "ParameterDict"):
            return assemble(node, {}, tensors, None)  # holds only tensors: nothing to defer
        return Later(lambda: assemble(node, {k: real(m) for k, m in children.items()}, tensors, None))  # type: ignore[union-attr]

    def owned_tensors(self, node: RNode) -> dict[str, torch.Tensor] | None:
        out: dict[str, torch.Tensor] = {}
        for key, spec in node.tensors.items():
            try:
                out[key] = make_tensor(spec, META, self.dtype)
            except Exception as err:  # noqa: BLE001 - the init function (torch's or netspec's) is reported
                self.problems.add(
                    self.source.problem(
                        spec.path + ("init",),
                        f"cannot initialise {key!r} of shape {list(spec.shape)}: {first_line(err)}",
                    )
                )
        if out:
            self.tensors[node.name] = [(t.numel(), t.dtype) for t in out.values()]
        return out if len(out) == len(node.tensors) else None

    def finish(self, node: RNode) -> Built | None:
        """Build a node nobody called (a ModuleList element, an unused layer) without inference."""
        if node.name in self.built:
            return self.built[node.name]
        module, _ = self.node(node, None)
        return module

    # -- graphs -------------------------------------------------------------------------------
    def graph(self, node: RNode, args: tuple[Any, ...] | None, kwargs: Mapping[str, Any] | None) -> Ran:
        graph = compile_statements(node, self.source, self.problems)
        if graph is None:
            return None, None
        self.graphs[node.name] = graph
        tensors = self.owned_tensors(node)
        if tensors is None:
            return None, None
        out = None
        if args is not None:
            out = self.run_graph(node, graph, tensors, args, kwargs or {})
            if out is FAILED:
                return None, None
        children = {k: self.finish(c) for k, c in node.children.items()}
        if any(m is None for m in children.values()):
            return None, None
        # Its forward is generated when something needs the module (a second call), not to validate it.
        module = Later(lambda: assemble(node, {k: real(m) for k, m in children.items()}, tensors, graph))  # type: ignore[union-attr]
        self.built[node.name] = module
        if out is not None:
            self.shapes[node.name] = output_shapes(out)
        return module, out

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
        inputs = dict(zip(graph_def.inputs, args, strict=False)) | dict(kwargs)
        prefix = f"{node.name}." if node.name else ""
        for n in graph.nodes:
            stmt_path, stmt_text = n.meta.get("netspec", (node.path, ""))
            try:
                if n.op == "placeholder":
                    env[n] = inputs[n.target]
                elif n.op == "get_attr":
                    target = str(n.target)
                    if target == "training":
                        env[n] = False
                    elif target in tensors:
                        env[n] = tensors[target]
                    else:
                        env[n] = self.child_value(node, target, stmt_path, stmt_text)
                        if env[n] is None:
                            return FAILED
                elif n.op == "output":
                    return fx.node.map_arg(n.args[0], lambda a: env[a])
                else:
                    a = fx.node.map_arg(n.args, lambda a: env[a])
                    kw = fx.node.map_arg(n.kwargs, lambda a: env[a])
                    env[n] = self.run_node(node, n, a, kw, prefix)
                    if env[n] is None and n.op == "call_module":
                        return FAILED  # the child reported its own problem
                    if n.op != "call_module":
                        self.calls.statement(node.name, n, a, kw, env[n])
                        self.mark(env[n], Producer(f"statement '{stmt_text.strip()}'"))
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
        if "device" in kwargs:  # validation allocates nothing: every device= runs on meta
            kwargs = {**kwargs, "device": META}
        if n.op == "call_method":
            if n.target in ("to", "cuda", "cpu"):  # moving between devices: the meta tensor stays on meta
                rest = [a for a in args[1:] if not isinstance(a, (str, torch.device, int))]
                kw = {k: v for k, v in kwargs.items() if k not in ("device", "non_blocking")}
                return args[0].to(*rest, **kw) if (rest or kw) and n.target == "to" else args[0]
            return getattr(args[0], str(n.target))(*args[1:], **kwargs)
        if n.target is route:
            holder, key, *rest = args
            outs = {k: self.node(c, tuple(rest), kwargs)[1] for k, c in holder.children.items()}
            if isinstance(key, str) and key in outs:
                return outs[key]
            return next(iter(outs.values()), None)
        fn: Callable[..., Any] = n.target  # type: ignore[assignment]
        if fn in FACTORIES:
            kwargs = {**kwargs, "device": META}
        fast = function_output(fn, args, kwargs)
        return fast if fast is not None else fn(*args, **kwargs)


def _lazy_class(cls: type) -> bool:
    return isinstance(cls, type) and issubclass(cls, LazyModuleMixin)


def _is_lazy(module: nn.Module) -> bool:
    return isinstance(module, LazyModuleMixin) and module.has_uninitialized_params()


def infer(
    root: RNode,
    source: Source,
    input_shape: tuple[int, ...] | None,
    input_dtype: str = "float32",
    batch: int = 2,
    *,
    weights_dtype: str = "float32",
) -> Inferred:
    """Run inference over a copy of ``root``; raises ``SpecError`` with every problem found, the batch
    written as B in its messages (at the default batch, from a second run at ``batch + 1``).
    ``weights_dtype`` is the dtype the model is built in (``build``'s ``dtype=``): inputs are checked against it.

    ``root`` is left as resolve made it: the returned ``Inferred.root`` is a new tree.
    """
    original, root = root, root.copy()
    problems = ProblemList()
    inferrer = Inferrer(source, problems, None if weights_dtype == "float32" else DTYPES[weights_dtype])
    args = None
    if input_shape is not None:
        inputs = root.graph.inputs if root.graph is not None else ["x"]
        if len(inputs) != 1:
            message = (
                f"input.shape describes one input, but the model's Graph takes {len(inputs)} ({', '.join(inputs)}); "
                "sizes are inferred only from a single tensor input"
            )
            hint = "drop input.shape and write in_features/in_channels/... where the other inputs go"
            raise SpecError(source.problem(("input",), message, hint=hint))
        dtype = DTYPES[input_dtype]
        args = (torch.empty((batch, *input_shape), dtype=dtype, device=META),)
        inferrer.has_input = True
    with torch.no_grad():
        module, _ = inferrer.node(root, args)
    if problems.errors and input_shape is not None and batch == 2:
        label_problems(
            problems,
            lambda b: infer(original, source, input_shape, input_dtype, b, weights_dtype=weights_dtype),
            batch,
            batch + 1,
        )
    problems.raise_if_errors()
    if module is None:
        raise RuntimeError("inference produced no model without reporting a problem")  # internal invariant
    found = inferrer
    return Inferred(root, found.graphs, found.shapes, problems.warnings, found.tensors, found.lazy_inputs, found.calls)
