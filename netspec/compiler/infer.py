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

from collections.abc import Mapping
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.nn.parameter import is_lazy

from ..catalog.checks import check_layer
from ..errors import ProblemList, SpecError, first_line
from ..frontend.source import Source
from .batchdims import label_problems
from .call_memo import Answer, CallMemo, fresh
from .calls import CallLog, LayerCall
from .construct import assemble, construct_layer, make_tensor
from .fill_sizes import fill_sizes
from .graph_compile import compile_statements
from .graph_run import FAILED, GraphRun
from .inferred import Built, Inferred, Later, real
from .input_dtypes import dtype_message, input_dtype_problem
from .meta import (
    DTYPES,
    INFERABLE,
    META,
    Producer,
    cache_key,
    first_tensor,
    is_lazy_module,
    kwargs_text,
    lazy_class,
    shape_text,
    tensors_of,
)
from .sequence_shapes import sequence_output
from .shapes import ShapeRuleBug, SkipInit, layer_output, output_shapes
from .tree import RNode

Ran = tuple[Built | None, Any]  # a node's module and its output


class Inferrer(GraphRun):
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
        self.memo = CallMemo()
        self.ruled = False  # the last call's output came from a shape rule
        self.producers: dict[int, Producer] = {}
        self.lazy_inputs: dict[str, tuple[torch.Size, ...]] = {}
        self._alive: list[Any] = []  # keeps tensors alive so id() keys stay unique

    # -- helpers ------------------------------------------------------------------------------
    def problem(self, node: RNode, message: str, arg: str | None = None, hint: str | None = None) -> None:
        path = node.arg_path(arg) if arg else node.path
        self.problems.add(self.source.problem(path, message + node.where(), hint=hint))

    def producer(self, t: torch.Tensor) -> Producer:
        return self.producers.get(id(t), Producer("the input"))

    def mark(self, value: Any, producer: Producer) -> None:
        if isinstance(value, torch.Tensor):  # the common case, without building a list
            self.producers[id(value)] = producer
            self._alive.append(value)
            return
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
        key = self.memo.key(node, args) if node.kind == "layer" and args is not None and not kwargs else None
        if key is not None:
            answer = self.memo.get(key)
            if answer is not None:
                return self.answered(node, args, answer)  # type: ignore[arg-type]
            reported, written = len(self.problems.problems), frozenset(node.args)
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
        if args is None:
            return module, None
        out = self.call(node, real(module), args, kwargs)
        if (
            key is not None
            and self.ruled
            and len(self.problems.problems) == reported
            and not is_lazy_module(real(module))
        ):
            self.memo.remember(key, node, written, real(module), out, args, self.calls.layers[node.name][-1])
        return module, out

    def answered(self, node: RNode, args: tuple[Any, ...], answer: Answer) -> Ran:
        """What ``layer`` and ``call`` do for a call the memo has answered: the same arguments, module,
        records and log entry, new output tensors."""
        node.args.update(answer.added)
        self.record_tensors(node.name, answer.module)
        self.built[node.name] = answer.module
        out = fresh(answer.output)
        self.called(node, args, out, answer.call)
        return answer.module, out

    def walked(self, node: RNode, args: tuple[Any, ...] | None, result: Ran) -> Ran:
        """Log a Sequential or Graph that inference ran step by step (its input and output shapes)."""
        if args is not None and result[0] is not None:
            self.calls.layer(node.name, args, result[1], forward=False)
        return result

    def layer(self, node: RNode, args: tuple[Any, ...] | None) -> nn.Module | None:
        layer = node.layer
        if layer is None:
            raise RuntimeError(f"{node.name}: a layer node without a catalogue entry")
        first = first_tensor(args) if args else None
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
        templates = [(k, v) for k, v in node.args.items() if isinstance(v, RNode)]
        for key, value in templates:
            built, _ = self.node(value, args if value.kind == "layer" else None)
            if built is None:
                return None
            nested[key] = real(built)
        # Layers with the same type and arguments behave the same on meta tensors: build one of each.
        key = None if nested or lazy_class(layer.cls) else cache_key(node)
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
        for _, value in templates:
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
            if not is_lazy_module(module):
                self.sizes_of[id(module)] = sizes
        self.tensors[name] = sizes

    def fill_in(self, node: RNode, args: tuple[Any, ...], x: torch.Tensor) -> bool:
        """Infer omitted sizes from the input, and check given ones against it; False after a mismatch."""
        return fill_sizes(
            node, args, x, self.producer, lambda message, arg, hint: self.problem(node, message, arg, hint)
        )

    def call(self, node: RNode, module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any] | None) -> Any:
        self.ruled = False
        lazy = is_lazy_module(module)
        wrong_dtype = input_dtype_problem(module, args, kwargs)
        if wrong_dtype is not None:
            message, hint = dtype_message(wrong_dtype, self.producer(wrong_dtype.tensor).name)
            self.problem(node, message, hint=hint)
            return None
        try:
            fast = None if kwargs else layer_output(module, args)
            if fast is None:
                fast = sequence_output(module, args, kwargs or {})
            self.ruled = fast is not None
            out = fast if fast is not None else module(*args, **(kwargs or {}))
        except ShapeRuleBug:
            raise  # netspec's own bug: the internal-error path, not the user's problem list
        except Exception as err:  # noqa: BLE001 - the layer's forward (a registered class) may raise anything
            inputs = ", ".join(
                f"{shape_text(a.shape)} from {self.producer(a).name}" for a in args if isinstance(a, torch.Tensor)
            )
            self.problem(node, f"{node.type_name} failed on input {inputs or 'of this call'}: {first_line(err)}")
            return None
        if lazy:
            # Its first input fixed its sizes: the real build materialises the same ones (construct.materialize_lazy).
            self.lazy_inputs[node.name] = tuple(a.shape for a in args if isinstance(a, torch.Tensor))
            self.record_tensors(node.name, module)
        self.called(node, args, out)
        return out

    def called(self, node: RNode, args: tuple[Any, ...], out: Any, logged: LayerCall | None = None) -> None:
        """Record a layer's call: its output shapes, the log entry and who produced each output tensor.
        ``logged``: the log entry of a call with the same input and output shapes (a memo's answer)."""
        if logged is None:
            logged = self.calls.layer(node.name, args, out, shapes=output_shapes(out))
        else:
            self.calls.again(node.name, logged)
        self.shapes[node.name] = logged.output
        # A flattening layer (a 2-D output of a larger input) names the shape it flattened in messages.
        first = first_tensor(args) if isinstance(out, torch.Tensor) and out.dim() == 2 else None
        flattening = first is not None and first.dim() > 2 and out.shape[1] == first[0].numel()
        self.mark(
            out,
            Producer(node.label, tuple(first.shape[1:]) if flattening and first is not None else None),
        )
        if flattening and first is not None and self.producer(first).name != "the input":
            self.mark(out, Producer(self.producer(first).name, tuple(first.shape[1:])))

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
