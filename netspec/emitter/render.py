"""``torch.fx`` graphs written back as Graph forward statements (the renderer behind ``netspec.emit``).

In: an fx graph whose ``call_module`` targets are a module's submodules — traced by
``emit_trace`` (every submodule a leaf, so each child stays one call) or taken from a
``GraphModule`` — that module, and its path for messages. Out: a ``GraphBody`` — ``inputs``,
``forward`` statements in the spec language and ``outputs`` — that netspec's statement compiler
turns back into the same computation. fx nodes map to statements as follows: ``call_module`` -> ``name(args)``
(``blocks.2`` -> ``blocks[2](h)``; a full in-order chain over a ModuleList -> ``blocks(h)``),
allow-listed ``torch``/``F`` functions -> their bare names, ``operator`` functions -> ``+ - * /
@ // % **`` and indexing, ``getattr(x, 'shape')`` -> ``x.shape``, allow-listed tensor methods ->
``h.view(...)``, ``get_attr`` -> the Graph's own tensor by name. Single-use values are inlined
(``relu(bn1(conv1(x)))``) only where that keeps the original evaluation order.

The spellings themselves (symbols, aliases, dtype methods, defaults) live in ``spelling.py``.
Anything else raises ``EmitError`` naming the module path, its class and the operation.
"""

from __future__ import annotations

import inspect
import keyword
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from ..compiler.allowlists import (
    CONSTANTS,
    DROPOUTS,
    DTYPES,
    FUNCTIONS,
    MODE_ARGUMENTS,
    TENSOR_ATTRIBUTES,
    TENSOR_METHODS,
    TRAINING,
    mode_select,
    route,
    set_index,
)
from ..errors import EmitError
from .child_calls import ChildCalls, node_refs, same_constant
from .guards import example_of
from .inplace import InPlaceWriting, functionalise
from .layers import where
from .lint import ModelWarning
from .lists import spread
from .modes import CONSTANT_PREFIX
from .spelling import (
    ASSERTS,
    ATOM,
    BINOPS,
    COMPARE,
    COMPARE_PREC,
    DTYPE_METHODS,
    IF_PREC,
    IN_PLACE,
    MAX_INLINE_CHARS,
    MAX_NESTING,
    UNARY,
    UNARY_PREC,
    Expr,
    Name,
    StatementWriter,
    factory_cast,
    function_name,
    keyword_defaults,
    public_name,
)


@dataclass
class GraphBody:
    """What a Graph node needs besides its layers and tensors."""

    inputs: list[str]
    forward: list[str]
    outputs: str | list[str] | dict[str, str]
    notes: list[ModelWarning] = field(default_factory=list)
    used: set[str] = field(default_factory=set)  # the children forward calls or reads (first name of a path)
    # traced children whose defaulted forward arguments are passed values computed here (DLA's ``shortcut``):
    # child path -> those names, which the child's Graph takes as inputs instead of fixing them
    passed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    called: set[str] = field(default_factory=set)  # the submodules forward calls (whole paths: ``blocks.0``)


CONSTANT = "netspec_constant"  # node.meta: the tensor fx stored for a constant made in forward

# -- rendering ------------------------------------------------------------------------------------------


class _Renderer(ChildCalls, InPlaceWriting, StatementWriter):
    def __init__(
        self,
        graph: fx.Graph,
        module: nn.Module,
        path: str,
        dropout_modes: Mapping[fx.Node, Any],
        traced: Callable[[nn.Module], bool],
        inputs_passed: Sequence[str] = (),
        guarded: bool = False,
    ) -> None:
        self.guarded = guarded  # traced with examples: traced children take the arguments given traced values
        self.graph = graph
        self.inputs_passed = set(inputs_passed)  # defaulted inputs the parent passes: kept even if unused
        self.traced = traced
        self.module = module
        self.path = path
        self.modes = dropout_modes
        self.children = dict(module.named_children())
        self.tensors = {n for n, _ in module.named_parameters(recurse=False)} | {
            n for n, _ in module.named_buffers(recurse=False)
        }
        self.taken: set[str] = (
            set(self.children) | self.tensors | set(FUNCTIONS) | set(CONSTANTS) | set(DTYPES) | {"training", "self"}
        )
        self.expr: dict[fx.Node, Expr] = {}
        self.statements: list[str] = []
        self.pending: list[fx.Node] = []
        self.depth: dict[fx.Node, int] = {}  # nesting of calls in a node's inlined expression
        self.notes: list[ModelWarning] = []
        self.passed: dict[str, tuple[str, ...]] = {}

    # -- one node -----------------------------------------------------------------------------------
    def render(self, n: fx.Node, chain: tuple[str, Any] | None) -> Expr:
        if chain is not None:
            return Expr(f"{self.child_ref(chain[0])}({self.value(chain[1]).text})")
        if n.op == "call_module":
            args, kwargs = self.child_call(str(n.target), n.args, n.kwargs)
            if self.guarded and self.traced(self.module.get_submodule(str(n.target))):
                args, kwargs = spread(args, kwargs)  # a list of tensors: one Graph input per element
            return Expr(f"{self.child_ref(str(n.target))}({self.call_args(args, kwargs)})")
        if n.op == "call_method":
            method = str(n.target)
            if method == "to":
                return self.render_to(n)
            if method in IN_PLACE:
                self.check_in_place(n)
                method = method[:-1]
            if method not in TENSOR_METHODS:
                listed = self.listed_input(n.args[0])
                if listed is not None:  # VoVNet's concat_list.append(...)
                    raise self.fail(
                        f"calls .{method}() on its forward input {listed!r}, a Python list (its annotation): the "
                        "trace sees one value where forward mutates a list, and a Graph input is one value"
                    )
                raise self.fail(f"calls the tensor method .{method}()")
            base = self.operand(n.args[0], ATOM)
            kwargs = dict(n.kwargs)
            cast = kwargs.get("dtype") if method in ("new_ones", "new_zeros") else None
            if isinstance(cast, torch.dtype) and cast in DTYPE_METHODS:  # ones and zeros are exact in any dtype
                del kwargs["dtype"]  # x.new_ones((), dtype=torch.bool) -> x.new_ones(()).bool()
                return Expr(f"{base}.{method}({self.call_args(n.args[1:], kwargs)}).{DTYPE_METHODS[cast]}()")
            return Expr(f"{base}.{method}({self.call_args(n.args[1:], kwargs)})")
        if n.op != "call_function":
            raise self.fail(f"has a {n.op} operation ({n.target})")
        fn = n.target
        if fn in BINOPS:
            symbol, prec = BINOPS[fn]  # type: ignore[index]
            left, right = n.args
            return Expr(f"{self.operand(left, prec)} {symbol} {self.operand(right, prec, right=True)}", prec)
        if fn in COMPARE:
            left, right = n.args
            symbol = COMPARE[fn]  # type: ignore[index]
            text = f"{self.operand(left, COMPARE_PREC + 1)} {symbol} {self.operand(right, COMPARE_PREC + 1)}"
            return Expr(text, COMPARE_PREC)
        if fn in UNARY:
            return Expr(f"{UNARY[fn]}{self.operand(n.args[0], UNARY_PREC)}", UNARY_PREC)  # type: ignore[index]
        if fn is operator.setitem:  # left by inplace.functionalise: another name would see the change
            raise self.fail(
                f"assigns into a part of {self.changed(n.args[0])} (t[...] = v) where another value sees the change "
                "(an input, parameter or buffer, a value that may be another one, or a view of it read after the "
                "assignment); a statement t[...] = v rebinds t to a new value, leaving every other value as it was"
            )
        if fn is operator.getitem:
            return Expr(f"{self.operand(n.args[0], ATOM)}[{self.index(n.args[1])}]")
        if fn is mode_select:  # a step or output of training mode only (modes.merge_modes)
            flag, if_training, if_eval = n.args
            body, test = self.operand(if_training, IF_PREC + 1), self.value(flag).text
            return Expr(f"{body} if {test} else {self.operand(if_eval, IF_PREC)}", IF_PREC)
        if fn is getattr:
            attr = n.args[1]
            if attr not in TENSOR_ATTRIBUTES:
                raise self.fail(f"reads the attribute .{attr}")
            return Expr(f"{self.operand(n.args[0], ATOM)}.{attr}")
        if fn is route:
            holder, key, *rest = n.args
            return Expr(
                f"{self.child_ref(str(holder.target))}[{self.value(key).text}]({self.call_args(tuple(rest), n.kwargs)})"
            )
        name = function_name(fn)
        if name is None:
            raise self.fail(f"calls {public_name(fn)}")
        kwargs = dict(n.kwargs)
        args = n.args
        if name in MODE_ARGUMENTS:
            index = MODE_ARGUMENTS[name]
            given = kwargs.pop("training", args[index] if len(args) > index else None)
            if len(args) > index:  # the arguments after training become keywords, by name
                names = list(inspect.signature(fn).parameters)  # type: ignore[arg-type]
                kwargs.update(dict(zip(names[index + 1 :], args[index + 1 :], strict=False)))
                args = args[:index]
            mode = self.modes.get(n, None) if not isinstance(given, fx.Node) else None
            if not isinstance(given, fx.Node) and n not in self.modes and isinstance(given, bool):
                mode = given  # a GraphModule traced elsewhere: its training flag was baked in
            if isinstance(given, fx.Node) and name not in DROPOUTS:
                kwargs["training"] = given
            elif mode is not None:
                kwargs["training"] = mode
            elif name not in DROPOUTS:  # follows self.training: dropouts get it from the language
                kwargs["training"] = Name(TRAINING)
        bounds = [*args, *(kwargs[k] for k in ("start", "end", "step") if k in kwargs)]
        cast = factory_cast(fn, [example_of(v) for v in bounds], kwargs.get("dtype"))
        if cast is not None:
            kwargs.pop("dtype")
        defaults = keyword_defaults(fn)  # type: ignore[arg-type]
        kwargs = {
            k: v for k, v in kwargs.items() if not (k in defaults and same_constant(v, defaults[k]) and k != "training")
        }
        if cast is not None:  # arange(n, dtype=torch.float32) -> arange(n).float(): the same values
            return Expr(f"{name}({self.call_args(args, kwargs)}).{cast}()")
        return Expr(f"{name}({self.call_args(args, kwargs)})")

    def listed_input(self, v: Any) -> str | None:
        """The name of the forward input ``v`` when forward annotates it as a list (``List[Tensor]``)."""
        if not isinstance(v, fx.Node) or v.op != "placeholder":
            return None
        try:
            param = inspect.signature(self.module.forward).parameters.get(str(v.target))
        except (TypeError, ValueError):
            return None
        annotation = "" if param is None else str(param.annotation)
        return str(v.target) if annotation.lower().startswith(("list", "typing.list", "sequence")) else None

    # -- whole graph --------------------------------------------------------------------------------
    def flush(self, n: fx.Node) -> None:
        name = self.fresh(n.name)
        self.statements.append(f"{name} = {self.expr[n].text}")
        self.expr[n] = Expr(name)

    def run(self) -> GraphBody:
        nodes = list(self.graph.nodes)
        self.passed = self.passed_values(nodes)
        skipped = self._skipped(nodes)
        chains, absorbed = self._chains(nodes, skipped)
        effective: dict[fx.Node, tuple[Any, ...]] = {}
        for n in nodes:
            if n in skipped or n in absorbed or n.op in ("placeholder", "output"):
                continue
            effective[n] = (chains[n][1],) if n in chains else (n.args, n.kwargs)
        output = next(n for n in nodes if n.op == "output")
        uses: dict[fx.Node, int] = {}
        for args in [*effective.values(), output.args]:
            for ref in node_refs(args):
                uses[ref] = uses.get(ref, 0) + 1
        out_refs = set(node_refs(output.args))
        inputs: list[str] = []
        for n in nodes:
            if n.op == "placeholder" and n not in skipped:
                name = str(n.target)
                if self.guarded and self.path and name in self.taken:
                    # an input named like a buffer or child (BertEmbeddings' token_type_ids buffer and argument);
                    # a guarded trace's parent passes its inputs by position, so the Graph input is renamed
                    while name in self.taken:
                        name = f"{name}_in"
                inputs.append(name)
                self.taken.add(name)
                self.expr[n] = Expr(name)
        for n in effective:
            if n.op == "get_attr":
                self.expr[n] = self._attr(n)
                continue
            assigning = n.op == "call_function" and n.target is set_index  # `t[key] = v`: t must be a name
            refs = [
                r
                for r in _eval_order(n, effective[n])
                if r.op != "get_attr" and r.op != "placeholder" and not (assigning and r is n.args[0])
            ]
            candidates = [r for r in refs if r in self.pending and uses.get(r, 0) == 1]
            inlined = 0
            while (
                inlined < len(candidates)
                and candidates[-1 - inlined] == self.pending[-1 - inlined]
                and self.depth[candidates[-1 - inlined]] < MAX_NESTING
                and len(self.expr[candidates[-1 - inlined]].text) <= MAX_INLINE_CHARS
            ):
                inlined += 1
            self.depth[n] = 1 + max((self.depth[c] for c in candidates[len(candidates) - inlined :]), default=0)
            keep = self.pending[: len(self.pending) - inlined]
            self.pending = []
            for p in keep:
                self.flush(p)
            if assigning:
                self.assign_index(n)
                continue
            self.expr[n] = self.render(n, chains.get(n))
            # a run-time `a if training else b` is a statement of its own: the language nests no branches
            if uses.get(n, 0) == 1 and n not in out_refs and n.target is not mode_select:
                self.pending.append(n)
            else:
                self.flush(n)
        for p in self.pending:
            self.flush(p)
        outputs = self._outputs(output.args[0])
        used = {str(n.target).split(".")[0] for n in nodes if n.op in ("call_module", "get_attr")}
        called = {str(n.target) for n in nodes if n.op == "call_module"} | {
            str(n.args[0].target) for n in nodes if n.target is route and isinstance(n.args[0], fx.Node)
        }
        return GraphBody(inputs, self.statements, outputs, self.notes, used & set(self.children), self.passed, called)

    def _attr(self, n: fx.Node) -> Expr:
        target = str(n.target)
        if target in self.tensors:
            return Expr(target)
        if target == "training" or target in self.children:
            return Expr(target)  # dropout's mode flag or route's ModuleDict; rendered by their users
        constant = n.meta.get(CONSTANT)
        if (
            isinstance(constant, torch.Tensor)
            and constant.dim() == 0
            and constant.dtype in DTYPE_METHODS
            and constant.device.type == "cpu"
        ):  # torch.tensor(1.0) made in forward: the same 0-dim CPU tensor
            return Expr(f"full((), {constant.item()!r}).{DTYPE_METHODS[constant.dtype]}()")
        if target.startswith(CONSTANT_PREFIX):
            plain = sorted(k for k, v in vars(self.module).items() if isinstance(v, torch.Tensor) and k[0] != "_")
            source = f" (its plain tensor attributes: {', '.join(plain)})" if plain else ""
            raise EmitError(
                f"{where(self.path, self.module)}: forward computes with a tensor that is not a registered "
                "parameter or buffer — arithmetic on a plain tensor attribute, or a tensor made in forward with "
                f"torch.tensor, which tracing stores as a constant{source} — so a spec cannot hold it"
                "\n    hint: self.register_buffer(name, tensor) in __init__ (or nn.Parameter to train it)"
            )
        if "." not in target:
            raise EmitError(
                f"{where(self.path, self.module)}: forward reads self.{target}, a tensor that is not a registered "
                "parameter or buffer, so a spec cannot hold it"
                "\n    hint: self.register_buffer(name, tensor) in __init__ (or nn.Parameter to train it)"
            )
        owner, _, name = target.rpartition(".")
        holder = self.module.get_submodule(owner) if owner.split(".")[0] in self.children else None
        if holder is not None and _holds(holder, name):
            if isinstance(holder, (nn.ParameterList, nn.ParameterDict)):  # scales[0], tables['a']
                key = list(holder._parameters).index(name) if isinstance(holder, nn.ParameterList) else repr(name)
                return Expr(f"{self.child_ref(owner)}[{key}]")
            if name.isidentifier() and not keyword.iskeyword(name):
                return Expr(f"{self.child_ref(owner)}.{name}")  # qkv.weight: the child's own tensor, read in place
        raise self.fail(f"reads {target!r}, which is not a parameter or buffer of a submodule")

    def _outputs(self, value: Any) -> str | list[str] | dict[str, str]:
        def name(v: Any) -> str:
            if isinstance(v, (tuple, list)) and v and all(isinstance(e, fx.Node) for e in v):
                # a nested tuple, ``return x, (h, w)``: one output holding the inner tuple, written as a statement
                fresh = self.fresh("out")
                inner = ", ".join(self.expr[e].text for e in v)
                if isinstance(v, list):
                    self.statements.append(f"{fresh} = [{inner}]")
                else:
                    self.statements.append(f"{fresh} = ({inner}{',' if len(v) == 1 else ''})")
                return fresh
            if not isinstance(v, fx.Node):
                raise self.fail(f"returns {v!r}, which is not a tensor computed in forward")
            text = self.expr[v].text
            if not text.isidentifier() or text in self.tensors:
                fresh = self.fresh("out")
                self.statements.append(f"{fresh} = {text}")
                return fresh
            return text

        if isinstance(value, (tuple, list)):
            return [name(v) for v in value]
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise self.fail("returns a dict with non-string keys")
            return {k: name(v) for k, v in value.items()}
        return name(value)

    def _skipped(self, nodes: list[fx.Node]) -> set[fx.Node]:
        """Nodes no statement needs: fx's checks on arguments fixed to their defaults (and those
        arguments), and unused indexing or attribute reads (``out, (h, c) = lstm(x)`` with h, c unused)."""
        skipped = {n for n in nodes if n.op == "call_function" and id(n.target) in ASSERTS}
        changed = True
        while changed:
            changed = False
            for n in nodes:
                if n in skipped or n.op == "output" or not all(u in skipped for u in n.users):
                    continue
                fixed_input = n.op == "placeholder" and bool(n.args) and n.target not in self.inputs_passed
                pure_read = n.op == "call_function" and n.target in (operator.getitem, getattr)
                if fixed_input or pure_read or (bool(n.users) and n.op == "call_function"):
                    skipped.add(n)
                    changed = True
        return skipped

    def _chains(
        self, nodes: list[fx.Node], skipped: set[fx.Node]
    ) -> tuple[dict[fx.Node, tuple[str, Any]], set[fx.Node]]:
        """Runs of ``P.0(h) -> P.1 -> ... -> P.(n-1)`` over a whole ModuleList/Sequential -> one ``P(h)``."""
        chains: dict[fx.Node, tuple[str, Any]] = {}
        absorbed: set[fx.Node] = set()
        for n in nodes:
            if (
                n.op != "call_module"
                or not str(n.target).endswith(".0")
                or n in absorbed
                or len(n.args) != 1
                or n.kwargs
            ):
                continue
            parent_path = str(n.target)[:-2]
            parent = self.module.get_submodule(parent_path)
            keys = list(parent._modules)
            if not isinstance(parent, (nn.Sequential, nn.ModuleList)) or keys != [str(i) for i in range(len(keys))]:
                continue
            run, current = [n], n
            for i in range(1, len(keys)):
                users = list(current.users)
                nxt = users[0] if len(users) == 1 else None
                if (
                    nxt is None
                    or nxt.op != "call_module"
                    or nxt.target != f"{parent_path}.{i}"
                    or nxt.args != (current,)
                    or nxt.kwargs
                ):
                    break
                run.append(nxt)
                current = nxt
            if len(run) == len(keys) and len(keys) > 1:
                chains[run[-1]] = (parent_path, n.args[0])
                absorbed.update(run[:-1])
        return chains, absorbed


def _holds(module: nn.Module, name: str) -> bool:
    """Whether ``name`` is one of ``module``'s own parameters or buffers."""
    return name in module._parameters or name in module._buffers


def _eval_order(n: fx.Node, args: tuple[Any, ...]) -> list[fx.Node]:
    """The nodes ``n``'s statement evaluates, in the order the statement compiler evaluates them."""
    if n.op == "call_method" and len(args) == 2:  # h.view(a, b): arguments first, then the object
        positional, kwargs = args
        return node_refs((positional[1:], kwargs)) + node_refs(positional[:1])
    return node_refs(args)


def render_graph(
    graph: fx.Graph,
    module: nn.Module,
    path: str,
    dropout_modes: Mapping[fx.Node, Any] | None = None,
    traced: Callable[[nn.Module], bool] | None = None,
    passed: Sequence[str] = (),
    *,
    guarded: bool = False,
) -> GraphBody:
    """Statements, inputs and outputs for ``graph``, whose call_module targets are ``module``'s submodules.

    ``traced(child)`` says whether a child is emitted as a traced Graph (whose defaulted inputs are fixed);
    ``passed``: this module's defaulted inputs that its parent passes, which stay inputs even when unused;
    ``guarded``: the graph was traced with examples (see ``guards``), so a traced child's arguments given a
    constant are fixed to it in the child's Graph (its own guarded trace does so) instead of refused."""
    functionalise(graph, module)
    return _Renderer(graph, module, path, dropout_modes or {}, traced or (lambda m: False), passed, guarded).run()


__all__ = ["GraphBody", "render_graph"]
