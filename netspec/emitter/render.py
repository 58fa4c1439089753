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

Anything else raises ``EmitError`` naming the module path, its class and the operation.
"""

from __future__ import annotations

import inspect
import keyword
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ..compiler.allowlists import (
    CONSTANTS,
    DROPOUTS,
    FUNCTIONS,
    MODE_ARGUMENTS,
    TENSOR_ATTRIBUTES,
    TENSOR_METHODS,
    TRAINING,
    route,
)
from ..errors import EmitError
from .layers import same_value, where
from .lint import ModelWarning

_BINOPS: dict[Callable[..., Any], tuple[str, int]] = {
    operator.add: ("+", 11),
    operator.sub: ("-", 11),
    operator.mul: ("*", 12),
    operator.truediv: ("/", 12),
    operator.floordiv: ("//", 12),
    operator.mod: ("%", 12),
    operator.matmul: ("@", 12),
    operator.pow: ("**", 14),
    # fx records `a += b` on tensors as the out-of-place operator; the in-place forms map the same way.
    operator.iadd: ("+", 11),
    operator.isub: ("-", 11),
    operator.imul: ("*", 12),
    operator.itruediv: ("/", 12),
}
_COMPARE: dict[Callable[..., Any], str] = {
    operator.eq: "==",
    operator.ne: "!=",
    operator.lt: "<",
    operator.le: "<=",
    operator.gt: ">",
    operator.ge: ">=",
}
COMPARE_PREC = 6
_UNARY: dict[Callable[..., Any], str] = {operator.neg: "-", operator.pos: "+", operator.invert: "~"}
ATOM, UNARY_PREC = 100, 13
MAX_NESTING, MAX_INLINE_CHARS = 3, 48  # inline single-use values only while statements stay readable
# Functions that compute the same as an allow-listed name (same call signature for what fx records).
_ALIASES: dict[int, str] = {
    id(torch.relu): "relu",
    id(torch.softmax): "softmax",
    id(torch.log_softmax): "log_softmax",
    id(F.sigmoid): "sigmoid",
    id(F.tanh): "tanh",
    id(torch.ceil): "ceil",
    id(math.ceil): "ceil",
    id(torch.floor): "floor",
    id(math.floor): "floor",
}
# ``h.to(torch.float64)`` is written with the dtype's own tensor method: the language has no dtype values.
_DTYPE_METHODS: dict[torch.dtype, str] = {
    torch.float32: "float",
    torch.float16: "half",
    torch.float64: "double",
    torch.bfloat16: "bfloat16",
    torch.int64: "long",
    torch.int32: "int",
    torch.bool: "bool",
}
# In-place tensor methods written out of place when nothing else can see the mutation.
_IN_PLACE = frozenset({"add_", "sub_", "mul_", "div_", "clamp_", "pow_", "neg_", "abs_", "sqrt_", "exp_"})
# Methods whose result shares storage with their input (an in-place write through one changes the other).
_VIEWS = frozenset(
    {
        "view",
        "view_as",
        "reshape",
        "permute",
        "transpose",
        "contiguous",
        "unsqueeze",
        "squeeze",
        "flatten",
        "unflatten",
        "expand",
        "expand_as",
        "narrow",
        "t",
        "mT",
        "detach",
        "unfold",
        "chunk",
        "split",
        "unbind",
        "movedim",
        "swapaxes",
    }
)
_ASSERTS = {id(fx._symbolic_trace._assert_is_none), id(torch._assert)}


@cache
def _function_names() -> dict[int, str]:
    names: dict[int, str] = {}
    for name, fn in FUNCTIONS.items():
        names.setdefault(id(fn), name)
    for ident, name in _ALIASES.items():
        names.setdefault(ident, name)
    return names


@cache
def _public_names() -> dict[int, str]:
    """Public spellings of torch functions (``torch.special.logit``, not ``torch._C._special...``)."""
    names: dict[int, str] = {}
    spaces = [
        (torch, "torch"),
        (F, "torch.nn.functional"),
        (torch.special, "torch.special"),
        (torch.linalg, "torch.linalg"),
        (torch.fft, "torch.fft"),
        (math, "math"),
        (operator, "operator"),
    ]
    for space, prefix in spaces:
        for attr in dir(space):
            if not attr.startswith("_"):
                names.setdefault(id(getattr(space, attr)), f"{prefix}.{attr}")
    return names


def _public_name(fn: Any) -> str:
    known = _public_names().get(id(fn))
    if known:
        return known
    return f"{getattr(fn, '__module__', None) or ''}.{getattr(fn, '__qualname__', repr(fn))}".lstrip(".")


@cache
def _defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """Keyword defaults of ``fn``; for torch's ``boolean_dispatch`` wrappers, those of the wrapped function."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return {}
    if all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        wrapped = [
            c.cell_contents for c in getattr(fn, "__closure__", None) or () if inspect.isfunction(c.cell_contents)
        ]
        return _defaults(wrapped[0]) if wrapped else {}
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def fixed_inputs(module: nn.Module) -> dict[str, tuple[int, Any]]:
    """Forward parameters a traced module's Graph fixes to their default (None, bool, int, float, str):
    name -> (position, default). Its Graph inputs are the other parameters, in order."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return {}
    return {
        p.name: (i, p.default)
        for i, p in enumerate(params)
        if p.default is not p.empty and (p.default is None or isinstance(p.default, (bool, int, float, str)))
    }


@dataclass
class GraphBody:
    """What a Graph node needs besides its layers and tensors."""

    inputs: list[str]
    forward: list[str]
    outputs: str | list[str] | dict[str, str]
    notes: list[ModelWarning] = field(default_factory=list)


def function_name(fn: Any) -> str | None:
    """The allow-listed statement name of a torch/F function, by identity (or an exact alias)."""
    return _function_names().get(id(fn))


# -- rendering ------------------------------------------------------------------------------------------


@dataclass
class _Expr:
    text: str
    prec: int = ATOM


@dataclass(frozen=True)
class _Name:
    """A bare name in a rendered call (``training``)."""

    name: str


class _Renderer:
    def __init__(
        self,
        graph: fx.Graph,
        module: nn.Module,
        path: str,
        dropout_modes: Mapping[fx.Node, Any],
        traced: Callable[[nn.Module], bool],
    ) -> None:
        self.graph = graph
        self.traced = traced
        self.module = module
        self.path = path
        self.modes = dropout_modes
        self.children = dict(module.named_children())
        self.tensors = {n for n, _ in module.named_parameters(recurse=False)} | {
            n for n, _ in module.named_buffers(recurse=False)
        }
        self.taken: set[str] = (
            set(self.children) | self.tensors | set(FUNCTIONS) | set(CONSTANTS) | {"training", "self"}
        )
        self.expr: dict[fx.Node, _Expr] = {}
        self.statements: list[str] = []
        self.pending: list[fx.Node] = []
        self.depth: dict[fx.Node, int] = {}  # nesting of calls in a node's inlined expression
        self.notes: list[ModelWarning] = []

    def fail(self, what: str) -> EmitError:
        return EmitError(
            f"{where(self.path, self.module)}: {what}, which the spec language cannot express"
            f"\n    hint: rewrite that step with allow-listed functions and tensor methods, or register "
            f"{type(self.module).__name__} with netspec.register so that the spec names it as a layer"
        )

    # -- names --------------------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        base = base.lstrip("_") or "v"
        if not base.isidentifier() or keyword.iskeyword(base):
            base = "v"
        name, k = base, 1
        while name in self.taken:
            name = f"{base}_out" if k == 1 else f"{base}_out{k}"
            k += 1
        self.taken.add(name)
        return name

    def child_ref(self, target: str) -> str:
        parts = target.split(".")
        first = parts[0]
        if first not in self.children or not first.isidentifier() or keyword.iskeyword(first):
            raise self.fail(f"calls submodule {target!r}, whose name is not a Python identifier")
        text, parent = first, self.children[first]
        for part in parts[1:]:
            keys = list(parent._modules)
            if isinstance(parent, (nn.Sequential, nn.ModuleList)) and part.isdigit():
                text += f"[{keys.index(part)}]"
            elif part.isidentifier() and not keyword.iskeyword(part):
                text += f".{part}"
            else:
                text += f"[{part!r}]"
            parent = parent._modules[part]  # type: ignore[assignment]
        return text

    # -- values -------------------------------------------------------------------------------------
    def value(self, v: Any) -> _Expr:
        if isinstance(v, _Name):
            return _Expr(v.name)
        if isinstance(v, fx.Node):
            return self.expr[v]
        if v is None or isinstance(v, (bool, int, str)):
            return _Expr(repr(v))
        if isinstance(v, float):
            if math.isnan(v):
                raise self.fail("uses the constant nan")
            if math.isinf(v):
                return _Expr("inf" if v > 0 else "-inf", ATOM if v > 0 else UNARY_PREC)
            return _Expr(repr(v), ATOM if v >= 0 else UNARY_PREC)
        if isinstance(v, list):
            return _Expr("[" + ", ".join(self.value(x).text for x in v) + "]")
        if isinstance(v, tuple):
            items = [self.value(x).text for x in v]
            return _Expr("(" + items[0] + ",)" if len(items) == 1 else "(" + ", ".join(items) + ")")
        raise self.fail(f"uses the constant {v!r} ({type(v).__name__})")

    def index(self, v: Any) -> str:
        if isinstance(v, slice):
            parts = ["" if p is None else self.value(p).text for p in (v.start, v.stop, v.step)]
            return ":".join(parts[:2]) + (f":{parts[2]}" if parts[2] else "")
        if isinstance(v, tuple) and v:
            items = [self.index(x) for x in v]
            return items[0] + "," if len(items) == 1 else ", ".join(items)
        if v is Ellipsis:
            raise self.fail("indexes with '...' (Ellipsis)")
        return self.value(v).text

    def operand(self, v: Any, prec: int, right: bool = False) -> str:
        e = self.value(v)
        low = e.prec < prec or (right and e.prec == prec) or (not right and e.prec == prec and prec == 14)
        return f"({e.text})" if low else e.text

    def call_args(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        parts = [self.value(a).text for a in args] + [f"{k}={self.value(v).text}" for k, v in kwargs.items()]
        return ", ".join(parts)

    # -- one node -----------------------------------------------------------------------------------
    def render(self, n: fx.Node, chain: tuple[str, Any] | None) -> _Expr:
        if chain is not None:
            return _Expr(f"{self.child_ref(chain[0])}({self.value(chain[1]).text})")
        if n.op == "call_module":
            args, kwargs = self.child_call(str(n.target), n.args, n.kwargs)
            return _Expr(f"{self.child_ref(str(n.target))}({self.call_args(args, kwargs)})")
        if n.op == "call_method":
            method = str(n.target)
            if method == "to":
                return self.render_to(n)
            if method in _IN_PLACE:
                self.check_in_place(n)
                method = method[:-1]
            if method not in TENSOR_METHODS:
                raise self.fail(f"calls the tensor method .{method}()")
            base = self.operand(n.args[0], ATOM)
            return _Expr(f"{base}.{method}({self.call_args(n.args[1:], n.kwargs)})")
        if n.op != "call_function":
            raise self.fail(f"has a {n.op} operation ({n.target})")
        fn = n.target
        if fn in _BINOPS:
            symbol, prec = _BINOPS[fn]  # type: ignore[index]
            left, right = n.args
            return _Expr(f"{self.operand(left, prec)} {symbol} {self.operand(right, prec, right=True)}", prec)
        if fn in _COMPARE:
            left, right = n.args
            symbol = _COMPARE[fn]  # type: ignore[index]
            text = f"{self.operand(left, COMPARE_PREC + 1)} {symbol} {self.operand(right, COMPARE_PREC + 1)}"
            return _Expr(text, COMPARE_PREC)
        if fn in _UNARY:
            return _Expr(f"{_UNARY[fn]}{self.operand(n.args[0], UNARY_PREC)}", UNARY_PREC)  # type: ignore[index]
        if fn is operator.getitem:
            return _Expr(f"{self.operand(n.args[0], ATOM)}[{self.index(n.args[1])}]")
        if fn is getattr:
            attr = n.args[1]
            if attr not in TENSOR_ATTRIBUTES:
                raise self.fail(f"reads the attribute .{attr}")
            return _Expr(f"{self.operand(n.args[0], ATOM)}.{attr}")
        if fn is route:
            holder, key, *rest = n.args
            return _Expr(
                f"{self.child_ref(str(holder.target))}[{self.value(key).text}]({self.call_args(tuple(rest), n.kwargs)})"
            )
        name = _function_names().get(id(fn))
        if name is None:
            raise self.fail(f"calls {_public_name(fn)}")
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
                kwargs["training"] = _Name(TRAINING)
        defaults = _defaults(fn)  # type: ignore[arg-type]
        kwargs = {k: v for k, v in kwargs.items() if not (k in defaults and _same(v, defaults[k]) and k != "training")}
        return _Expr(f"{name}({self.call_args(args, kwargs)})")

    def child_call(
        self, target: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments of a call of a traced child, less those its Graph fixes to their defaults (a caller
        passing another value is refused: the child's Graph would silently ignore it)."""
        child = self.module.get_submodule(target)
        fixed = fixed_inputs(child) if self.traced(child) else {}
        if not fixed:
            return args, dict(kwargs)
        names = list(inspect.signature(child.forward).parameters)
        if len(fixed) == len(names):
            return args, dict(kwargs)  # every input defaulted: the child's own trace refuses it, naming why
        given = {**{names[i]: v for i, v in enumerate(args) if i < len(names)}, **kwargs}
        for name, value in given.items():
            if name in fixed and not _same(value, fixed[name][1]):
                shown = "a value computed in forward" if isinstance(value, fx.Node) else repr(value)
                raise EmitError(
                    f"{where(self.path, self.module)}: calls {target} ({type(child).__name__}) with {name}={shown}, "
                    f"but its emitted Graph fixes {name} to the default {fixed[name][1]!r} (Graph inputs have no "
                    "defaults), so the value would be lost"
                    f"\n    hint: give {type(child).__name__}.forward's {name!r} no default, "
                    "or pass it as a layer argument"
                )
        kept_args = args[: min(i for i, _ in fixed.values())]
        covered = set(names[: len(kept_args)])
        kept_kwargs = {k: v for k, v in given.items() if k not in fixed and k not in covered}
        return kept_args, kept_kwargs

    def render_to(self, n: fx.Node) -> _Expr:
        """``h.to(dtype)`` -> ``h.double()`` etc.; a device or other ``.to`` arguments are refused."""
        rest = [*n.args[1:], *n.kwargs.values()]
        if len(rest) == 1 and rest[0] in _DTYPE_METHODS and set(n.kwargs) <= {"dtype"}:
            return _Expr(f"{self.operand(n.args[0], ATOM)}.{_DTYPE_METHODS[rest[0]]}()")
        raise self.fail(f"calls .to({self.call_args(n.args[1:], {})}) with something other than one dtype")

    def check_in_place(self, n: fx.Node) -> None:
        """``h.mul_(2)`` may be written ``h.mul(2)`` only when no one else sees ``h`` changed: ``h`` (and what it
        is a view of) is computed in this forward, not an input, parameter or buffer, and is not read later."""
        order = {m: i for i, m in enumerate(self.graph.nodes)}
        base = n.args[0]
        while isinstance(base, fx.Node):
            later = [u for u in base.users if u is not n and order[u] > order[n]]
            if base.op in ("placeholder", "get_attr") or later:
                what = (
                    f"the {'input' if base.op == 'placeholder' else 'tensor'} {base.target!r}"
                    if base.op in ("placeholder", "get_attr")
                    else f"a value read again later ({later[0].name})"
                )
                raise EmitError(
                    f"{where(self.path, self.module)}: forward changes {what} in place with .{n.target}(), "
                    "which a Graph cannot express (statements compute new values)"
                    f"\n    hint: write the out-of-place .{str(n.target)[:-1]}() in forward"
                )
            views = (base.op == "call_method" and str(base.target) in _VIEWS) or (
                base.op == "call_function" and base.target is operator.getitem
            )
            if not views:
                return
            base = base.args[0]

    # -- whole graph --------------------------------------------------------------------------------
    def flush(self, n: fx.Node) -> None:
        name = self.fresh(n.name)
        self.statements.append(f"{name} = {self.expr[n].text}")
        self.expr[n] = _Expr(name)

    def run(self) -> GraphBody:
        nodes = list(self.graph.nodes)
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
            for ref in _refs(args):
                uses[ref] = uses.get(ref, 0) + 1
        out_refs = set(_refs(output.args))
        inputs: list[str] = []
        for n in nodes:
            if n.op == "placeholder" and n not in skipped:
                inputs.append(str(n.target))
                self.taken.add(str(n.target))
                self.expr[n] = _Expr(str(n.target))
        for n in effective:
            if n.op == "get_attr":
                self.expr[n] = self._attr(n)
                continue
            refs = [r for r in _eval_order(n, effective[n]) if r.op != "get_attr" and r.op != "placeholder"]
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
            self.expr[n] = self.render(n, chains.get(n))
            if uses.get(n, 0) == 1 and n not in out_refs:
                self.pending.append(n)
            else:
                self.flush(n)
        for p in self.pending:
            self.flush(p)
        outputs = self._outputs(output.args[0])
        return GraphBody(inputs, self.statements, outputs, self.notes)

    def _attr(self, n: fx.Node) -> _Expr:
        target = str(n.target)
        if target in self.tensors:
            return _Expr(target)
        if target == "training" or target in self.children:
            return _Expr(target)  # dropout's mode flag or route's ModuleDict; rendered by their users
        if target.startswith("_tensor_constant") or "." not in target:
            what = f"self.{target}" if "." not in target and not target.startswith("_tensor_constant") else "a tensor"
            raise EmitError(
                f"{where(self.path, self.module)}: forward reads {what}, a tensor that is not a registered "
                "parameter or buffer (a plain attribute, or made with torch.tensor in forward), so a spec cannot "
                "hold it\n    hint: self.register_buffer(name, tensor) in __init__ (or nn.Parameter to train it)"
            )
        raise self.fail(f"reads the tensor {target!r} of a submodule directly")

    def _outputs(self, value: Any) -> str | list[str] | dict[str, str]:
        def name(v: Any) -> str:
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
        skipped = {n for n in nodes if n.op == "call_function" and id(n.target) in _ASSERTS}
        changed = True
        while changed:
            changed = False
            for n in nodes:
                if n in skipped or n.op == "output" or not all(u in skipped for u in n.users):
                    continue
                fixed_input = n.op == "placeholder" and bool(n.args)
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


def _eval_order(n: fx.Node, args: tuple[Any, ...]) -> list[fx.Node]:
    """The nodes ``n``'s statement evaluates, in the order the statement compiler evaluates them."""
    if n.op == "call_method" and len(args) == 2:  # h.view(a, b): arguments first, then the object
        positional, kwargs = args
        return _refs((positional[1:], kwargs)) + _refs(positional[:1])
    return _refs(args)


def _refs(value: Any) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg(value, lambda n: found.append(n) or n)  # type: ignore[func-returns-value]
    return found


def _same(a: Any, b: Any) -> bool:
    """Equal constants (``layers.same_value``); a graph node equals no constant."""
    return not isinstance(a, fx.Node) and not isinstance(b, fx.Node) and same_value(a, b)


def render_graph(
    graph: fx.Graph,
    module: nn.Module,
    path: str,
    dropout_modes: Mapping[fx.Node, Any] | None = None,
    traced: Callable[[nn.Module], bool] | None = None,
) -> GraphBody:
    """Statements, inputs and outputs for ``graph``, whose call_module targets are ``module``'s submodules.

    ``traced(child)`` says whether a child is emitted as a traced Graph (whose defaulted inputs are fixed)."""
    return _Renderer(graph, module, path, dropout_modes or {}, traced or (lambda m: False)).run()


__all__ = ["GraphBody", "fixed_inputs", "render_graph"]
