"""How fx ops and values are spelled in the spec language: the tables and expression text behind the Graph renderer.

In: torch functions, ``operator`` functions, tensor-method names and dtypes as ``torch.fx`` records
them; a traced module (for ``fixed_inputs``). Out: their spec-language spellings — infix symbols
with their precedence (``BINOPS``, ``COMPARE``, ``UNARY``), the allow-listed statement name of a
function (``function_name``, by identity or exact alias), the dtype methods that stand for
``.to(dtype)``, the in-place methods that may be written out of place, the view methods that share
storage, a function's keyword defaults and public dotted name (for messages), and the forward
parameters a traced module's Graph fixes to their defaults. ``StatementWriter`` turns values
(constants, slices, fx nodes already rendered) into expression text with the parentheses their
precedence needs, child references (``blocks[2]``, ``heads.cls``) and fresh names. ``render.py``
walks the graph and uses them to write statements; nothing here walks a graph.
"""

from __future__ import annotations

import inspect
import keyword
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ..compiler.allowlists import DTYPES, FUNCTIONS
from ..errors import EmitError
from .equivalents import function_equivalent
from .layers import where

BINOPS: dict[Callable[..., Any], tuple[str, int]] = {
    operator.add: ("+", 11),
    operator.sub: ("-", 11),
    operator.mul: ("*", 12),
    operator.truediv: ("/", 12),
    operator.floordiv: ("//", 12),
    operator.mod: ("%", 12),
    operator.matmul: ("@", 12),
    operator.pow: ("**", 14),
    operator.and_: ("&", 9),  # Python's precedence: below + and -, above comparisons
    operator.xor: ("^", 8),
    operator.or_: ("|", 7),
}
# fx records `a += b` on tensors as the out-of-place operator; the in-place forms map the same way.
BINOPS.update(
    {
        in_place: BINOPS[plain]
        for in_place, plain in (
            (operator.iadd, operator.add),
            (operator.isub, operator.sub),
            (operator.imul, operator.mul),
            (operator.itruediv, operator.truediv),
        )
    }
)
COMPARE: dict[Callable[..., Any], str] = {
    operator.eq: "==",
    operator.ne: "!=",
    operator.lt: "<",
    operator.le: "<=",
    operator.gt: ">",
    operator.ge: ">=",
}
COMPARE_PREC = 6
UNARY: dict[Callable[..., Any], str] = {operator.neg: "-", operator.pos: "+", operator.invert: "~"}
ATOM, UNARY_PREC = 100, 13
IF_PREC = 1  # `a if training else b`
MAX_NESTING, MAX_INLINE_CHARS = 3, 48  # inline single-use values only while statements stay readable
# Functions that compute the same as an allow-listed name (same call signature for what fx records).
ALIASES: dict[int, str] = {
    id(torch.relu): "relu",
    id(torch.softmax): "softmax",
    id(torch.log_softmax): "log_softmax",
    id(F.sigmoid): "sigmoid",
    id(F.tanh): "tanh",
    id(torch.ceil): "ceil",
    id(math.ceil): "ceil",
    id(torch.floor): "floor",
    id(math.floor): "floor",
    # torch.meshgrid([a, b]) of a list reaches torch's C function (the list holds no tensor for dispatch)
    id(torch._C._VariableFunctions.meshgrid): "meshgrid",
}
# ``h.to(torch.float64)`` is written with the dtype's own tensor method: the language has no dtype values.
DTYPE_METHODS: dict[torch.dtype, str] = {
    torch.float32: "float",
    torch.float16: "half",
    torch.float64: "double",
    torch.bfloat16: "bfloat16",
    torch.int64: "long",
    torch.int32: "int",
    torch.bool: "bool",
}
# In-place tensor methods written out of place when nothing else can see the mutation.
IN_PLACE = frozenset({"add_", "sub_", "mul_", "div_", "clamp_", "pow_", "neg_", "abs_", "sqrt_", "exp_"})
# Methods whose result shares storage with their input (an in-place write through one changes the other).
VIEWS = frozenset(
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
ASSERTS = {id(fx._symbolic_trace._assert_is_none), id(torch._assert)}


@cache
def _function_names() -> dict[int, str]:
    names: dict[int, str] = {}
    for name, fn in FUNCTIONS.items():
        names.setdefault(id(fn), name)
    for ident, name in ALIASES.items():
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


def public_name(fn: Any) -> str:
    known = _public_names().get(id(fn))
    if known:
        return known
    return f"{getattr(fn, '__module__', None) or ''}.{getattr(fn, '__qualname__', repr(fn))}".lstrip(".")


@cache
def keyword_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """Keyword defaults of ``fn``; for torch's ``boolean_dispatch`` wrappers, those of the wrapped function."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return {}
    if all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        wrapped = [
            c.cell_contents for c in getattr(fn, "__closure__", None) or () if inspect.isfunction(c.cell_contents)
        ]
        return keyword_defaults(wrapped[0]) if wrapped else {}
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


def passed_constants(module: nn.Module, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of that call given a constant (not a traced value): the child's Graph fixes them to it."""
    try:
        signature = inspect.signature(module.forward)
        given = signature.bind_partial(*args, **kwargs).arguments
    except (TypeError, ValueError):
        return {}
    kinds = {p.name: p.kind for p in signature.parameters.values()}
    out = {
        k: v
        for k, v in given.items()
        if kinds[k] not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD) and not _holds_node(v)
    }
    for k, v in given.items():  # keywords that only **kwargs takes (GPT-2's use_cache=False to its attention)
        if kinds[k] is inspect.Parameter.VAR_KEYWORD:
            out.update({name: value for name, value in v.items() if not _holds_node(value)})
    return out


def _holds_node(value: Any) -> bool:
    found: list[bool] = []
    fx.node.map_arg(value, lambda n: found.append(True) or n)
    return bool(found)


def function_name(fn: Any) -> str | None:
    """The allow-listed statement name of a torch/F function, by identity (or an exact alias)."""
    return _function_names().get(id(fn)) or function_equivalent(fn)


# -- expression text ----------------------------------------------------------------------------------
@dataclass
class Expr:
    """A rendered expression and its precedence (``ATOM`` binds tightest)."""

    text: str
    prec: int = ATOM


@dataclass(frozen=True)
class Name:
    """A bare name in a rendered call (``training``)."""

    name: str


class StatementWriter:
    """Expression text for one module's Graph statements: constants, indexes, operands with the
    parentheses their precedence needs, call arguments, child references and fresh names.

    Subclasses set ``module``, ``path``, ``children`` (name -> child), ``taken`` (names in use) and
    ``expr`` (fx node -> its rendered expression)."""

    module: nn.Module
    path: str
    children: dict[str, nn.Module]
    taken: set[str]
    expr: dict[fx.Node, Expr]

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
        if first not in self.children:  # unreachable: fx only records calls of registered children
            raise self.fail(f"calls submodule {target!r}, which is not one of its children")
        if first.isidentifier() and not keyword.iskeyword(first):
            text = first
        else:
            # A Sequential subclass's children 0, 1, ...: the Graph's own children by position (``self[0]``),
            # or by name where the position differs (``self['0']``).
            keys = [k for k, v in self.module._modules.items() if v is not None]  # the emitted `layers` order
            text = f"self[{first}]" if first.isdigit() and keys.index(first) == int(first) else f"self[{first!r}]"
        parent = self.children[first]
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
    def value(self, v: Any) -> Expr:
        if isinstance(v, Name):
            return Expr(v.name)
        if isinstance(v, fx.Node):
            return self.expr[v]
        if v is None or isinstance(v, (bool, int, str)):
            return Expr(repr(v))
        if isinstance(v, float):
            if math.isnan(v):
                raise self.fail("uses the constant nan")
            if math.isinf(v):
                return Expr("inf" if v > 0 else "-inf", ATOM if v > 0 else UNARY_PREC)
            return Expr(repr(v), ATOM if v >= 0 else UNARY_PREC)
        if isinstance(v, list):
            return Expr("[" + ", ".join(self.value(x).text for x in v) + "]")
        if isinstance(v, tuple):
            items = [self.value(x).text for x in v]
            return Expr("(" + items[0] + ",)" if len(items) == 1 else "(" + ", ".join(items) + ")")
        if isinstance(v, torch.dtype) and str(v).removeprefix("torch.") in DTYPES:
            return Expr(str(v).removeprefix("torch."))  # arange(n, dtype=float32)
        raise self.fail(f"uses the constant {v!r} ({type(v).__name__})")

    def index(self, v: Any) -> str:
        if isinstance(v, slice):
            parts = ["" if p is None else self.value(p).text for p in (v.start, v.stop, v.step)]
            return ":".join(parts[:2]) + (f":{parts[2]}" if parts[2] else "")
        if isinstance(v, tuple) and v:
            items = [self.index(x) for x in v]
            return items[0] + "," if len(items) == 1 else ", ".join(items)
        if v is Ellipsis:
            return "..."  # h[..., :w]: the statement language reads it as Python does
        return self.value(v).text

    def operand(self, v: Any, prec: int, right: bool = False) -> str:
        e = self.value(v)
        low = e.prec < prec or (right and e.prec == prec) or (not right and e.prec == prec and prec == 14)
        return f"({e.text})" if low else e.text

    def call_args(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        parts = [self.value(a).text for a in args] + [f"{k}={self.value(v).text}" for k, v in kwargs.items()]
        return ", ".join(parts)

    def render_to(self, n: fx.Node) -> Expr:
        """``h.to(dtype)`` -> ``h.double()`` etc.; ``h.to(v)`` of one value of forward (``w.dtype``, ``x.device``,
        a tensor) as it is; ``h.to(device=x.device, dtype=torch.bool)`` -> ``h.to(x.device).bool()``
        (``to_steps``); a constant device or other ``.to`` arguments are refused."""
        steps = to_steps(n.args[1:], n.kwargs)
        if steps is None:
            shown = ", ".join(
                [str(v) if isinstance(v, fx.Node) else repr(v) for v in n.args[1:]]
                + [f"{k}={v}" if isinstance(v, fx.Node) else f"{k}={v!r}" for k, v in n.kwargs.items()]
            )
            raise self.fail(f"calls .to({shown}) with a fixed device or arguments other than a dtype and a device")
        text = self.operand(n.args[0], ATOM)
        for kind, value in steps:
            text += f".{DTYPE_METHODS[value]}()" if kind == "dtype" else f".to({self.value(value).text})"
        return Expr(text)


def to_steps(args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[tuple[str, Any]] | None:
    """``h.to(...)``'s arguments (after ``h``) as the casts that compute the same, in order: ``("value", v)``
    for a value of forward (``x.device``, ``w.dtype``, a tensor: written ``.to(v)``) and ``("dtype", d)`` for a
    fixed dtype (written ``.float()``, ...). ``h.to(device=d, dtype=torch.bool)`` is ``h.to(d).bool()``: a move
    and an element-wise cast, the same values as torch's one step (and ``h`` itself when neither changes
    anything, as ``.to`` returns). None when the call fixes a device (``'cuda:0'`` would tie the spec to one
    machine), asks for ``copy=True``, ``non_blocking=True`` or a memory format, or names no target."""
    rest, named = list(args), dict(kwargs)
    if named.pop("copy", False) is not False or named.pop("non_blocking", False) is not False:
        return None
    if named.pop("memory_format", torch.preserve_format) is not torch.preserve_format:
        return None
    while rest and isinstance(rest[-1], bool):  # to(dtype, non_blocking, copy) given by position
        if rest.pop() is not False:
            return None
    device, dtype, other = named.pop("device", None), named.pop("dtype", None), named.pop("other", None)
    if named or len(rest) > 2:
        return None
    if len(rest) == 2:  # to(device, dtype)
        if device is not None or dtype is not None:
            return None
        device, dtype = rest
    elif len(rest) == 1:
        if isinstance(rest[0], torch.dtype):
            dtype = rest[0] if dtype is None else None
        else:
            other = rest[0]  # to(x.device), to(w.dtype), to(x): one value of forward, written as it is
    steps: list[tuple[str, Any]] = []
    for value in (device, other):
        if value is None:
            continue
        if not isinstance(value, fx.Node):
            return None  # a fixed device
        steps.append(("value", value))
    if isinstance(dtype, fx.Node):
        steps.append(("value", dtype))
    elif isinstance(dtype, torch.dtype) and dtype in DTYPE_METHODS:
        steps.append(("dtype", dtype))
    elif dtype is not None:
        return None
    return steps or None


# The dtypes whose arange of integers equals the int64 arange cast to it (one rounding of an exact
# integer: not bfloat16, whose arange rounds through float first).
ARANGE_CASTS = frozenset({torch.float32, torch.float64, torch.float16, torch.int64, torch.int32})


def factory_cast(fn: Any, bounds: Sequence[Any], dtype: Any) -> str | None:
    """The tensor method that makes ``fn(*args, dtype=d)`` of the same factory without its dtype
    (``zeros(s, dtype=torch.long)`` is ``zeros(s).long()``), or None. ``arange`` only of integers (``bounds``:
    its start, end and step, as the trace's examples): float bounds would be computed in the default dtype first."""
    if not isinstance(dtype, torch.dtype) or dtype not in DTYPE_METHODS:
        return None
    if fn in (torch.ones, torch.zeros):
        return DTYPE_METHODS[dtype]
    if fn is not torch.arange or dtype not in ARANGE_CASTS:
        return None
    if all(isinstance(v, int) and not isinstance(v, bool) for v in bounds):
        return DTYPE_METHODS[dtype]
    return None


__all__ = [
    "ALIASES",
    "ASSERTS",
    "ATOM",
    "BINOPS",
    "COMPARE",
    "COMPARE_PREC",
    "DTYPE_METHODS",
    "IF_PREC",
    "IN_PLACE",
    "MAX_INLINE_CHARS",
    "MAX_NESTING",
    "UNARY",
    "UNARY_PREC",
    "VIEWS",
    "Expr",
    "Name",
    "StatementWriter",
    "factory_cast",
    "fixed_inputs",
    "function_name",
    "keyword_defaults",
    "passed_constants",
    "public_name",
    "to_steps",
]
