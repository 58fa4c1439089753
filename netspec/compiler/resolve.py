"""Stage 3: resolve — vars substituted, blocks instantiated, repeats expanded.

In: a ``SpecModel`` and its ``Source``. Out: a tree of ``RNode``s (``tree``), each with its final
module name (``layer1.0.conv1``), the document path it came from (for error locations),
its catalogue entry and type-checked arguments (``${...}`` already substituted). Arguments
that the input determines may still be missing; ``infer`` fills them in.
"""

from __future__ import annotations

import math
from collections import ChainMap
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from ..catalog.argtypes import Finding
from ..catalog.checks import check_layer
from ..catalog.registry import LAYERS, LayerType, UnknownName
from ..catalog.windows import INTEGER_INITS
from ..errors import SpecError, SpecPath, did_you_mean, format_path
from ..frontend.budget import BudgetExceeded
from ..frontend.models import (
    NODE_KINDS,
    AnyNode,
    BlockSpec,
    GraphNode,
    LayerNode,
    ModuleDictNode,
    ModuleListNode,
    ParameterDictNode,
    ParameterListNode,
    RepeatItem,
    SequentialNode,
    SpecModel,
    problems_from_validation,
)
from ..frontend.source import Source
from ..frontend.substitute import Substitution
from . import values
from .block_args import BlockArgs
from .expansion import NODE_ADAPTER, check_expansion
from .instances import InContext, Where
from .meta import immutable, typed_items
from .names import check_child_name, check_graph_inputs
from .tree import LEFT_OUT, VALUES_INIT, Resolved, RGraph, RNode, RStatement, RTensor

MAX_REPEAT = 100_000
MAX_ELEMENTS = 2**48  # per tensor: far beyond any device, far below int64 overflow in size arithmetic
EXACT_INITS = ("zeros", "ones", "constant")  # the inits an integer or bool buffer can take
MAX_NESTING = 100  # nodes inside nodes, block bodies included: far past real models, well inside Python's stack


class Resolver:
    """Walks the spec model once, collecting every problem rather than stopping at the first."""

    def __init__(
        self, spec: SpecModel, source: Source, problems: InContext, substitution: Substitution | None = None
    ) -> None:
        self.spec = spec
        self.source = source
        self.problems = problems
        self.block_stack: list[str] = []
        self.used_blocks: set[str] = set()  # blocks instantiated so far; the rest are checked at the end
        # The read's one ${} pass (vars already resolved); a fresh one for a document resolved on its own.
        self.substitution = substitution or Substitution(spec.vars, source, problems)
        self.failed = self.substitution.failed
        self.vars = self.substitution.vars
        self.budget = self.substitution.budget
        self.depth = 0
        self.check_memo: dict[Any, tuple[dict[str, Any], list[Finding]]] = {}  # see ``checked``
        self.estimator: Any = None  # expansion.Estimator, set by resolve() once the vars are known
        self.block_args = BlockArgs(spec.blocks, self.substitution, source, problems)
        for name in spec.blocks:
            if name in LAYERS and LAYERS.get(name).origin == "torch.nn":
                problems.add(source.problem(("blocks", name), f"block name {name!r} shadows torch.nn.{name}"))

    # -- values -------------------------------------------------------------------------------
    def substitute(self, value: Any, scope: Mapping[str, Any], path: SpecPath) -> Any:
        if _plain(value):  # what the ${} pass would return for it (a flat mapping: a copy), without the walk
            return dict(value) if isinstance(value, dict) else value
        return self.substitution.at(value, scope, path, self.problems)  # problems here carry their context

    def integer(self, value: Any, scope: Mapping[str, Any], path: SpecPath, what: str, low: int = 0) -> int | None:
        value = self.substitute(value, scope, path)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            self.problems.add(self.source.problem(path, f"{what} must be an integer >= {low}, got {value!r}"))
            return None
        return value

    def check_copies(self, count: int, layer: Any, path: SpecPath) -> None:
        """Before making ``count`` copies of ``layer``: would they pass the module budget?"""
        if self.estimator is None or count <= 1:
            return
        each = self.estimator.node(layer, (*path, "layer"))
        what = " × ".join([f"{format_path(path)} repeat {count:,}", *each.chain[:5]])
        self.budget.check_modules(count * each.modules, path, what)

    def check_unused_blocks(self) -> None:
        """Blocks no node uses are still checked: resolved with their declared defaults. A block with a
        parameter that has no default cannot be resolved without a use and is left to its first use.
        Skipped once the model has problems: a broken chain of blocks would be reported again from each link."""
        if self.problems.errors:
            return
        for name, block in self.spec.blocks.items():
            if name in self.used_blocks or any(decl.required for decl in block.params.values()):
                continue
            self.used_blocks.add(name)
            params: dict[str, Any] = {}
            if not self.block_args.fill_defaults(name, params):
                continue  # the default's problem is reported at its line
            self.block_stack.append(name)
            try:
                with self.problems.inside(Where.note(f"block {name}, used nowhere, checked with its defaults")):
                    self.node(block.body, name, ("blocks", name, "body"), ChainMap(params, self.vars))
            finally:
                self.block_stack.pop()

    # -- nodes --------------------------------------------------------------------------------
    def included(self, node: AnyNode, path: SpecPath, scope: Mapping[str, Any]) -> bool:
        """The node's ``if:`` (true when it has none); a value that is not a bool is reported."""
        condition = getattr(node, "if_", None)
        if condition is None:
            return True
        value = self.substitute(condition, scope, (*path, "if"))
        if not isinstance(value, bool):
            if (*path, "if") not in self.failed:
                message = f"if: must be true or false, got {type(value).__name__} {value!r}"
                self.problems.add(self.source.problem((*path, "if"), message, hint="e.g. if: ${depth > 2}"))
            return True  # keep validating the node
        return value

    def node(self, node: AnyNode, name: str, path: SpecPath, scope: Mapping[str, Any]) -> RNode | None:
        """The resolved node, ``LEFT_OUT`` when its ``if:`` is false, or None after reporting a problem."""
        if not self.included(node, path, scope):
            return LEFT_OUT
        if self.depth >= MAX_NESTING:
            stack = self.block_stack
            shown = [*stack[:4], "...", *stack[-3:]] if len(stack) > 8 else stack
            chain = " -> ".join(shown) or "none"
            message = f"nodes are nested more than {MAX_NESTING} levels deep, block bodies included (blocks: {chain})"
            self.problems.add(self.source.problem(path, message))
            return None
        self.budget.charge_modules(1, path)
        self.depth += 1
        try:
            out = self._node(node, name, path, scope)
        finally:
            self.depth -= 1
        if out is not None and self.problems.context and not out.context:
            out.context = self.problems.describe()
        return out

    def _node(self, node: AnyNode, name: str, path: SpecPath, scope: Mapping[str, Any]) -> RNode | None:
        if isinstance(node, LayerNode):
            return self.layer(node, name, path, scope)
        if isinstance(node, RepeatItem):
            self.problems.add(
                self.source.problem(
                    path,
                    "{repeat: N, layer: ...} splices copies into a list of layers and is only allowed there",
                    hint="use {type: Sequential, repeat: N, layer: ...} for a container of copies",
                )
            )
            return None
        if isinstance(node, (SequentialNode, ModuleListNode)):
            return self.sequence(node, name, path, scope)
        if isinstance(node, ModuleDictNode):
            out = RNode("ModuleDict", name, path)
            self.children(out, node.layers, path + ("layers",), scope)
            return out
        if isinstance(node, GraphNode):
            return self.graph(node, name, path, scope)
        if isinstance(node, (ParameterListNode, ParameterDictNode)):
            out = RNode(node.type, name, path)
            entries = dict(enumerate(node.parameters)) if isinstance(node, ParameterListNode) else node.parameters
            for key, tensor in entries.items():
                named = isinstance(node, ParameterDictNode)
                if named and not check_child_name(key, path + ("parameters", key), self.source, self.problems):
                    continue  # a key with '.' or an nn.Module attribute's name: ParameterDict refuses it
                resolved = self.tensor(tensor, path + ("parameters", key), scope)
                if resolved is not None:
                    out.tensors[str(key)] = resolved
            return out
        raise TypeError(f"unexpected node {node!r}")  # unreachable: pydantic admits only the kinds above

    def children(
        self, out: RNode, layers: Mapping[str, Any] | list[Any], path: SpecPath, scope: Mapping[str, Any]
    ) -> None:
        if not isinstance(layers, Mapping):
            self.splice(out, layers, path, scope)
            return
        for key, child in layers.items():
            key_name = str(key)
            child_path = path + (key,)
            if isinstance(key, str) and not check_child_name(key, child_path, self.source, self.problems):
                continue
            resolved = self.node(child, f"{out.name}.{key_name}" if out.name else key_name, child_path, scope)
            if resolved is LEFT_OUT:
                out.omitted[key_name] = (*child_path, "if")
            elif resolved is not None:
                out.children[key_name] = resolved

    def splice(self, out: RNode, layers: list[Any], path: SpecPath, scope: Mapping[str, Any]) -> None:
        """List-form layers: children 0, 1, ...; a ``{repeat, layer}`` item adds its copies in place."""
        for k, child in enumerate(layers):
            if isinstance(child, RepeatItem):
                count = self.integer(child.repeat, scope, path + (k, "repeat"), "repeat", low=0)
                if count is not None and count > MAX_REPEAT:
                    message = f"repeat {count:,} exceeds the limit of {MAX_REPEAT:,} copies"
                    self.problems.add(self.source.problem(path + (k, "repeat"), message))
                    continue
                self.check_copies(count or 0, child.layer, path + (k,))
                for i in range(count or 0):
                    key = str(len(out.children))
                    with self.problems.inside(Where.copy(i, format_path(path + (k,)))):
                        resolved = self.node(
                            child.layer,
                            f"{out.name}.{key}" if out.name else key,
                            path + (k, "layer"),
                            ChainMap({"i": i}, scope),
                        )
                    if resolved is not None and resolved is not LEFT_OUT:
                        out.children[key] = resolved
                continue
            key = str(len(out.children))  # a left-out item takes no number: later ones number on
            resolved = self.node(child, f"{out.name}.{key}" if out.name else key, path + (k,), scope)
            if resolved is not None and resolved is not LEFT_OUT:
                out.children[key] = resolved

    def sequence(
        self, node: SequentialNode | ModuleListNode, name: str, path: SpecPath, scope: Mapping[str, Any]
    ) -> RNode:
        out = RNode(node.type, name, path)
        has_layers, has_repeat = node.layers is not None, node.repeat is not None or node.layer is not None
        if has_layers == has_repeat:
            self.problems.add(
                self.source.problem(
                    path,
                    f"{node.type} needs either 'layers' or 'repeat' with 'layer'",
                    hint="layers: [...]  or  repeat: 4, layer: {...}",
                )
            )
            return out
        if has_layers:
            self.children(out, node.layers, path + ("layers",), scope)  # type: ignore[arg-type]
            return out
        if node.layer is None or node.repeat is None:
            missing = "layer" if node.layer is None else "repeat"
            self.problems.add(self.source.problem(path, f"'repeat' and 'layer' go together; missing {missing!r}"))
            return out
        count = self.integer(node.repeat, scope, path + ("repeat",), "repeat", low=1)
        if count is None:
            return out
        if count > MAX_REPEAT:
            message = f"repeat {count:,} exceeds the limit of {MAX_REPEAT:,} copies"
            self.problems.add(self.source.problem(path + ("repeat",), message))
            return out
        self.check_copies(count, node.layer, path)
        for i in range(count):
            key = str(len(out.children))  # copies left out by their `if:` take no number
            with self.problems.inside(Where.copy(i, name)):
                child = self.node(
                    node.layer, f"{name}.{key}" if name else key, path + ("layer",), ChainMap({"i": i}, scope)
                )
            if child is not None and child is not LEFT_OUT:
                out.children[key] = child
        return out

    def graph(self, node: GraphNode, name: str, path: SpecPath, scope: Mapping[str, Any]) -> RNode:
        out = RNode("Graph", name, path)
        self.children(out, node.layers, path + ("layers",), scope)
        check_graph_inputs(node, path, self.source, self.problems)
        for kind, table in (("parameters", node.parameters), ("buffers", node.buffers)):
            for key, tensor in table.items():
                if not check_child_name(key, path + (kind, key), self.source, self.problems):
                    continue
                if key in out.children or key in out.tensors:
                    self.problems.add(self.source.problem(path + (kind, key), f"{key!r} is already defined"))
                    continue
                resolved = self.tensor(tensor, path + (kind, key), scope)
                if resolved is not None:
                    out.tensors[key] = resolved
        statements = [
            RStatement(str(self.substitute(text, scope, path + ("forward", k))), path + ("forward", k))
            for k, text in enumerate(node.forward)
        ]
        out.graph = RGraph(list(node.inputs), statements, node.outputs, path + ("outputs",))
        return out

    def tensor(self, tensor: Any, path: SpecPath, scope: Mapping[str, Any]) -> RTensor | None:
        shape = [self.integer(d, scope, path + ("shape", k), "a tensor dimension") for k, d in enumerate(tensor.shape)]
        if any(d is None for d in shape):
            return None
        if math.prod(shape) > MAX_ELEMENTS:  # type: ignore[arg-type]
            message = f"shape {shape} has {math.prod(shape):,} elements; the limit is {MAX_ELEMENTS:,}"  # type: ignore[arg-type]
            self.problems.add(self.source.problem(path + ("shape",), message))
            return None
        init = self.substitute(tensor.init, scope, path + ("init",))
        is_buffer = hasattr(tensor, "persistent")
        flag = self.substitute(tensor.persistent if is_buffer else tensor.requires_grad, scope, path)
        dtype = getattr(tensor, "dtype", None)
        fn = init.get("fn") if isinstance(init, dict) else init
        integer = dtype is not None and not dtype.startswith(("float", "bfloat"))
        if integer and fn not in EXACT_INITS and fn not in INTEGER_INITS and fn != VALUES_INIT:
            *others, last = ("zeros", "ones", "constant", *INTEGER_INITS)
            message = (
                f"{dtype} buffers are initialised with {', '.join(others)} or {last}, or "
                f"written out as {{fn: {VALUES_INIT}, data: [...]}}, got {fn!r}"
            )
            self.problems.add(self.source.problem(path + ("init",), message))
            return None
        if fn == VALUES_INIT and not self.values(init, shape, dtype, path + ("init",)):  # type: ignore[arg-type]
            return None
        return RTensor(
            tuple(shape),  # type: ignore[arg-type]
            init,
            path,
            trainable=bool(flag) if not is_buffer else False,
            persistent=bool(flag) if is_buffer else True,
            is_buffer=is_buffer,
            dtype=dtype,
        )

    def values(self, init: Mapping[str, Any], shape: Sequence[int], dtype: str | None, path: SpecPath) -> bool:
        """A ``values`` init: every element written out (``compiler.values``)."""
        problem = values.check(init, shape, dtype)
        if problem is not None:
            self.problems.add(self.source.problem(path + problem[1], problem[0]))
            return False
        return True

    def layer(self, node: LayerNode, name: str, path: SpecPath, scope: Mapping[str, Any]) -> RNode | None:
        type_name = node.type
        if "${" in type_name:
            # `act: ${act}` in a block body: the param names a layer type, or holds a whole node.
            value = self.substitute(type_name, scope, path + ("type",))
            if isinstance(value, dict) and not node.args:
                return self.nested(value, name, path, scope)
            if not isinstance(value, str):
                self.problems.add(self.source.problem(path + ("type",), f"type must be a layer name, got {value!r}"))
                return None
            type_name = value
            if type_name in NODE_KINDS:  # `type: ${kind}` naming a container: read as that node
                return self.nested({"type": type_name, **node.args}, name, path, scope)
        if type_name in self.spec.blocks:
            return self.block_instance(type_name, self.spec.blocks[type_name], node, name, path, scope)
        try:
            layer = LAYERS.get(type_name)
        except UnknownName as err:
            candidates = [*LAYERS, *self.spec.blocks]
            self.problems.add(
                self.source.problem(
                    path + ("type",),
                    f"unknown layer type {type_name!r}",
                    hint=did_you_mean(type_name, candidates) or err.hint or None,
                )
            )
            return None
        raw = self.substitute(node.args, scope, path)
        if self.failed:
            raw = {k: v for k, v in raw.items() if (*path, k) not in self.failed}
        args, found = self.checked(layer, raw)
        out = RNode("layer", name, path, layer=layer, args=args, written=tuple(raw))
        for arg, message, hint in found:
            self.problems.add(self.source.problem(path + ((arg,) if arg else ()), message, hint=hint))
        for arg, value in list(args.items()):
            if not isinstance(value, (dict, str)):
                continue
            param = layer.params.get(arg)
            if param is not None and param.type.is_node:
                nested = self.nested(value, f"{name}.{arg}", path + (arg,), scope)
                if nested is None or nested is LEFT_OUT:
                    del args[arg]
                else:
                    args[arg] = nested
        return out

    def checked(self, layer: LayerType, raw: dict[str, Any]) -> tuple[dict[str, Any], list[Finding]]:
        """``raw`` converted and checked (``check_args``, ``check_layer``): once per distinct layer type and
        plain arguments (10,000 copies of six layers are six checks), each node getting its own dict."""
        try:
            key: Any = (layer.name, layer.cls, typed_items(raw))
        except TypeError:  # a nested node, a mapping: checked on its own
            key = None
        known = self.check_memo.get(key) if key is not None else None
        if known is not None:
            return dict(known[0]), list(known[1])
        args, found = layer.check_args(raw)
        found += check_layer(layer, args)
        if key is not None and all(immutable(v) for v in args.values()):
            self.check_memo[key] = (dict(args), list(found))
        return args, found

    def nested(self, value: Any, name: str, path: SpecPath, scope: Mapping[str, Any]) -> RNode | None:
        """A node given as a layer argument (TransformerEncoder's ``encoder_layer``)."""
        try:
            node = NODE_ADAPTER.validate_python(value)
        except ValidationError as err:
            sub = Source(value, self.source.filename, self.source.text, {})
            for p in problems_from_validation(err, sub):
                self.problems.add(self.source.problem(path + p.path, p.message, hint=p.hint))
            return None
        return self.node(node, name, path, scope)

    def block_instance(
        self, block_name: str, block: BlockSpec, node: LayerNode, name: str, path: SpecPath, scope: Mapping[str, Any]
    ) -> RNode | None:
        if block_name in self.block_stack:
            cycle = " -> ".join([*self.block_stack[self.block_stack.index(block_name) :], block_name])
            self.problems.add(self.source.problem(path + ("type",), f"blocks use each other recursively: {cycle}"))
            return None
        given = self.substitute(node.args, scope, path)
        params = self.block_args.bind(block_name, given, path)
        if params is None:
            return None
        where = Where.block(block_name, name, path)
        with self.problems.inside(where):  # a default's problem is said once, with the instances it is in
            if not self.block_args.fill_defaults(block_name, params):
                return None
        scope = ChainMap(params, self.vars)
        if self.estimator is not None:  # the params are known now: so are repeat counts that use them
            each = self.estimator.with_scope(scope).node(block.body, ("blocks", block_name, "body"))
            what = " × ".join([f"block {block_name} at {format_path(path)}", *each.chain[:5]])
            self.budget.check_modules(each.modules, path, what)
        self.used_blocks.add(block_name)
        self.block_stack.append(block_name)
        try:
            with self.problems.inside(where):
                out = self.node(block.body, name, ("blocks", block_name, "body"), scope)
        finally:
            self.block_stack.pop()
        if out is not None and out is not LEFT_OUT:
            out.block = block_name
            out.use_path = path
        return out


_SCALARS = (int, float, bool, type(None))


def _plain(value: Any) -> bool:
    """A value with no ``${`` in it and nothing nested: a string, a number, or a flat mapping of them by str."""
    if isinstance(value, str):
        return "${" not in value
    if isinstance(value, dict):
        for k, v in value.items():
            if type(k) is not str or not (isinstance(v, _SCALARS) or (isinstance(v, str) and "${" not in v)):
                return False
        return True
    return isinstance(value, _SCALARS)


def resolve(spec: SpecModel, source: Source, substitution: Substitution | None = None) -> Resolved:
    """Resolve ``spec``; raises ``SpecError`` with every problem found. ``substitution``: the read's
    ``${}`` pass, whose vars are already resolved (``netspec.read`` passes it)."""
    problems = InContext()
    resolver = Resolver(spec, source, problems, substitution)
    problems.raise_if_errors()  # bad vars would only cascade
    resolver.estimator = check_expansion(spec, source, resolver.vars, resolver.budget)
    resolver.block_args.check_defaults()  # once each, before any use
    try:
        root = resolver.node(spec.model, "", ("model",), resolver.vars)
        loss = resolver.node(spec.loss, "", ("loss",), resolver.vars) if spec.loss is not None else None
        resolver.check_unused_blocks()
        for what, got in (("model", root), ("loss", loss)):
            if got is LEFT_OUT:
                problems.add(source.problem((what, "if"), f"the {what} itself cannot be left out by 'if: false'"))
    except BudgetExceeded as err:  # stop at once: going on is what the budget prevents
        problems.add(source.problem(err.path, err.message, hint=err.hint))
        raise SpecError(problems.errors) from None
    problems.raise_if_errors()
    if root is None:  # every path that returns None records an error, so this is unreachable
        raise RuntimeError("model did not resolve")
    return Resolved(root, loss, resolver.vars, problems.warnings)


__all__ = ["RGraph", "RNode", "RStatement", "RTensor", "Resolved", "format_path", "resolve"]
