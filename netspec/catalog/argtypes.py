"""The one argument-type system: Python annotations -> checkers for spec values.

Used for every keyword argument a spec gives torch: layer and loss constructors (through
``registry.LayerType.check_args``), optimizers, schedulers and ``nn.init`` functions (through
``training.kwargs.check_kwargs``). In: a callable's parameters (annotation and default).
Out: ``Param`` records whose ``ArgType`` checks a JSON-like value from a spec, converts it to
what torch expects (lists become tuples where torch takes tuples, number lists become tensors
where torch takes a tensor; an int stays an int where torch takes a float, as in hand-written
PyTorch), describes itself for error messages ("int or [int, int]") and renders itself as
JSON Schema; and ``check_arguments``, which checks a whole mapping of arguments with one
wording for every caller: ``<owner>.<arg>: expected <type>, got <value>``, ``<what> has no
argument 'x'`` (with "did you mean"), ``<what> needs argument 'x', which is missing``.

An annotation a spec cannot write (a Python function, a ``torch.Generator``, an options
object) is a ``python`` type that accepts nothing, so such a value is refused when the spec
is read rather than failing inside torch at build time or at the first forward.
"""

from __future__ import annotations

import collections.abc
import contextlib
import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn as nn

from ..errors import did_you_mean

Kind = Literal[
    "any", "int", "float", "bool", "str", "none", "literal", "tuple", "list", "dict", "union", "tensor", "node",
    "python",
]  # fmt: skip
REQUIRED: Any = inspect.Parameter.empty


class ArgMismatch(Exception):
    """A value does not fit an ``ArgType``; the message says what was expected and got."""


def describe_value(value: Any) -> str:
    """How a received value is named in messages: ``str 'no'``, ``float 0.5``, ``list [3, 3]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"bool {str(value).lower()}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


@dataclass(frozen=True)
class ArgType:
    """A checker for one argument, built from a typing annotation."""

    kind: Kind
    items: tuple[ArgType, ...] = ()  # tuple: fixed items; list/variadic tuple: one element type
    variadic: bool = False  # tuple[int, ...]
    options: tuple[ArgType, ...] = ()  # union members
    values: tuple[Any, ...] = ()  # literal values

    def describe(self) -> str:
        if self.kind == "union":
            written = [o for o in self.options if o.writable]
            if not written:
                return self.options[0].describe()
            text = " or ".join(dict.fromkeys(o.describe() for o in written))
            unwritable = [o.values[0] for o in self.options if o.kind == "python"]
            return text + (f" (a Python {unwritable[0]} cannot be written in a spec)" if unwritable else "")
        if self.kind == "literal":
            return "one of " + ", ".join(repr(v) for v in self.values)
        if self.kind == "tuple" and not self.variadic:
            return "[" + ", ".join(i.describe() for i in self.items) + "]"
        if self.kind in ("tuple", "list"):
            return f"list of {self.items[0].describe()}"
        if self.kind == "tensor":
            return "list of numbers (a tensor)"
        if self.kind == "dict":
            return f"mapping of {self.items[0].describe()}"
        if self.kind == "node":
            return "a layer node"
        if self.kind == "python":
            return f"a Python {self.values[0]}, which a spec cannot write"
        return {"none": "null", "any": "any value", "float": "number"}.get(self.kind, self.kind)

    @property
    def writable(self) -> bool:
        """Whether a spec can write a value of this type (not for a Python function or object)."""
        if self.kind == "python":
            return False
        if self.kind in ("union", "tuple", "list", "dict"):
            parts = self.options if self.kind == "union" else self.items
            return any(o.writable for o in parts) if self.kind == "union" else all(o.writable for o in parts)
        return True

    @property
    def is_node(self) -> bool:
        return self.kind == "node" or any(o.is_node for o in self.options)

    def check(self, value: Any) -> Any:
        """Return ``value`` converted for torch, or raise ``ArgMismatch``."""
        kind = self.kind
        if kind == "any":
            return value
        if kind == "union":
            for option in self.options:
                try:
                    return option.check(value)
                except ArgMismatch:
                    continue
            raise self._mismatch(value)
        if kind == "none":
            if value is None:
                return None
        elif kind == "bool":
            if isinstance(value, bool):
                return value
        elif kind == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif kind == "float":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return value
        elif kind == "str":
            if isinstance(value, str):
                return value
        elif kind == "literal":
            if value in self.values and type(value) in {type(v) for v in self.values}:
                return value
        elif kind in ("tuple", "list"):
            if isinstance(value, (list, tuple)):
                return self._check_sequence(value)
        elif kind == "dict":
            if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
                return {k: self.items[0].check(v) for k, v in value.items()}
        elif kind == "tensor":
            if isinstance(value, (list, tuple)) and _is_number_tree(value):
                return torch.tensor(value, dtype=torch.get_default_dtype())
            if isinstance(value, torch.Tensor):
                return value
        elif kind == "node" and isinstance(value, (dict, str, nn.Module)):
            # Nodes are validated and built by the resolver; here only their shape matters.
            return value
        raise self._mismatch(value)

    def _check_sequence(self, value: list[Any] | tuple[Any, ...]) -> Any:
        if self.kind == "tuple" and not self.variadic:
            if len(value) != len(self.items):
                raise self._mismatch(value)
            converted = [item.check(v) for item, v in zip(self.items, value, strict=True)]
        else:
            converted = [self.items[0].check(v) for v in value]
        return tuple(converted) if self.kind == "tuple" else converted

    def _mismatch(self, value: Any) -> ArgMismatch:
        return ArgMismatch(f"expected {self.describe()}, got {describe_value(value)}")

    def json_schema(self) -> dict[str, Any]:
        kind = self.kind
        if kind == "union":
            written = [o for o in self.options if o.writable] or list(self.options[:1])
            return {"anyOf": [o.json_schema() for o in written]} if len(written) > 1 else written[0].json_schema()
        if kind == "literal":
            return {"enum": list(self.values)}
        if kind == "tuple" and not self.variadic:
            items = [i.json_schema() for i in self.items]
            return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
        if kind in ("tuple", "list"):
            return {"type": "array", "items": self.items[0].json_schema()}
        if kind == "tensor":
            return {"type": "array"}
        if kind == "dict":
            return {"type": "object", "additionalProperties": self.items[0].json_schema()}
        if kind == "node":
            return {"$ref": "#/$defs/Node"}
        if kind == "python":
            return {"not": {}, "description": self.describe()}
        simple = {"int": "integer", "float": "number", "bool": "boolean", "str": "string", "none": "null"}
        return {"type": simple[kind]} if kind in simple else {}


def _is_number_tree(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_is_number_tree(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


ANY = ArgType("any")
_MODULE_NAMES = {"Module", "TransformerEncoderLayer", "TransformerDecoderLayer"}


def python_type(name: str) -> ArgType:
    """A type a spec cannot write (a function, a ``torch.Generator``): it accepts no value."""
    return ArgType("python", values=(name,))


def _type_name(annotation: Any) -> str:
    if annotation is collections.abc.Callable or typing.get_origin(annotation) is collections.abc.Callable:
        return "function"
    if typing.get_origin(annotation) is type:
        return "class"
    return getattr(annotation, "__name__", None) or str(annotation)


def from_annotation(annotation: Any, default: Any = inspect.Parameter.empty) -> ArgType:
    """Translate an annotation (or, when there is none, its default) to an ``ArgType``."""
    if annotation is inspect.Parameter.empty:
        return _from_default(default)
    if isinstance(annotation, str):
        # Forward references left unresolved: module classes and typing names.
        names = {part.strip() for part in annotation.replace("|", ",").split(",")}
        if names & _MODULE_NAMES or any("Module" in n for n in names):
            return ArgType("union", options=(ArgType("node"), ArgType("none")))
        return ANY
    if annotation is Any or annotation is object or isinstance(annotation, typing.TypeVar):
        return ANY
    if annotation in (None, type(None)):
        return ArgType("none")
    simple = {bool: "bool", int: "int", float: "float", str: "str"}
    if annotation in simple:
        return ArgType(simple[annotation])
    if annotation is torch.Tensor:
        return ArgType("tensor")
    if annotation is torch.Size:
        return ArgType("tuple", items=(ArgType("int"),), variadic=True)
    if annotation in (list, tuple, collections.abc.Sequence, collections.abc.Iterable):
        return ArgType("tuple" if annotation is tuple else "list", items=(ANY,), variadic=True)
    if annotation in (dict, collections.abc.Mapping):
        return ArgType("dict", items=(ANY,))
    if isinstance(annotation, type) and issubclass(annotation, nn.Module):
        return ArgType("node")
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        members = tuple(dict.fromkeys(from_annotation(a) for a in args))
        if ArgType("float") in members:  # a scalar tensor (``lr: float | Tensor``) is written as a number
            members = tuple(m for m in members if m.kind != "tensor")
        return members[0] if len(members) == 1 else ArgType("union", options=members)
    if origin is Literal:
        return ArgType("literal", values=tuple(args))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return ArgType("tuple", items=(from_annotation(args[0]),), variadic=True)
        return ArgType("tuple", items=tuple(from_annotation(a) for a in args))
    if origin in (list, collections.abc.Sequence, collections.abc.Iterable):
        element = from_annotation(args[0]) if args else ANY
        return ArgType("list", items=(element,))
    if origin in (dict, collections.abc.Mapping) and len(args) == 2 and args[0] is str:
        return ArgType("dict", items=(from_annotation(args[1]),))
    if origin is typing.Annotated:
        return from_annotation(args[0], default)
    if (
        origin in (collections.abc.Callable, type)
        or annotation is collections.abc.Callable
        or isinstance(annotation, type)
    ):
        # Not expressible in a spec: a function, a class, an object (torch.Generator, an options record).
        return python_type(_type_name(annotation))
    return ANY


def _from_default(default: Any) -> ArgType:
    if isinstance(default, bool):
        return ArgType("bool")
    if isinstance(default, int):
        return ArgType("int")
    if isinstance(default, float):
        return ArgType("float")
    if isinstance(default, str):
        return ArgType("str")
    return ANY


@dataclass(frozen=True)
class Param:
    """One keyword argument of a layer constructor, optimizer, scheduler or init function."""

    name: str
    type: ArgType
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


_NAMESPACE: dict[str, Any] = {**vars(typing), **vars(collections.abc), "torch": torch, "Tensor": torch.Tensor}


def annotations_of(func: Callable[..., Any], params: Iterable[inspect.Parameter]) -> dict[str, Any]:
    """Each parameter's annotation as an object: string annotations evaluated in ``func``'s module
    (one that cannot be evaluated is kept as its string, for ``from_annotation``'s fallback)."""
    try:
        hints = typing.get_type_hints(func)
    except (NameError, TypeError, AttributeError, SyntaxError):  # one bad annotation: resolve them one by one
        hints = {}
    env = {**_NAMESPACE, **getattr(func, "__globals__", {})}
    out: dict[str, Any] = {}
    for p in params:
        ann = hints.get(p.name, p.annotation)
        if isinstance(ann, str):
            with contextlib.suppress(NameError, SyntaxError, TypeError, AttributeError):
                ann = eval(ann, env)  # torch's own annotation strings, never spec text
        out[p.name] = ann
    return out


def param_of(p: inspect.Parameter, annotation: Any) -> Param:
    """The ``Param`` for one signature parameter and its (resolved) annotation."""
    argtype = from_annotation(annotation, p.default)
    if argtype.kind == "any" and p.default is not REQUIRED and p.default is not None:
        argtype = _from_default(p.default)  # unannotated or untyped: the default's type
    takes_none = argtype.kind in ("any", "none") or any(o.kind == "none" for o in argtype.options)
    if p.default is None and not takes_none:
        # torch's default is None (AvgPool1d's stride): writing it out must be accepted too
        argtype = ArgType("union", options=(*(argtype.options or (argtype,)), ArgType("none")))
    return Param(p.name, argtype, p.default)


def signature_params(target: Callable[..., Any], skip: Iterable[str] = ()) -> dict[str, Param]:
    """Keyword-settable parameters of ``target`` (a function or a class's ``__init__``) minus ``skip``."""
    func = target.__init__ if inspect.isclass(target) else target  # type: ignore[misc]
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return {}
    skipped = set(skip) | {"self"}
    named = [
        p
        for name, p in sig.parameters.items()
        if name not in skipped and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY)
    ]
    hints = annotations_of(func, named)
    return {p.name: param_of(p, hints[p.name]) for p in named}


Finding = tuple[str | None, str, str | None]  # (argument or None, message, hint)


def name_list(names: Iterable[str], limit: int = 12) -> str:
    """``a, b, c`` (at most ``limit`` names, then ``… (N more)``)."""
    items = list(names)
    shown = ", ".join(items[:limit])
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


def check_arguments(
    params: Mapping[str, Param],
    given: Mapping[str, Any],
    *,
    owner: str,
    what: str | None = None,
    open_kwargs: bool = False,
    require: bool = False,
) -> tuple[dict[str, Any], list[Finding]]:
    """Check ``given`` against ``params``: the converted arguments and ``(argument, message, hint)`` findings.

    ``owner`` prefixes type errors (``Conv2d.kernel_size: expected int or [int, int], got str 'x'``,
    ``SGD.lr: expected number, got str 'x'``); ``what`` names the callable in the other messages
    (``optimizer SGD has no argument 'momentun'``), ``owner`` when omitted. ``open_kwargs``: names
    beyond ``params`` pass unchecked (a registered class taking ``**kwargs``). ``require``: a missing
    required argument is a finding (layers leave that to inference, which may fill it in).
    """
    label = what or owner
    converted: dict[str, Any] = {}
    found: list[Finding] = []
    suggested: set[str] = set()  # a misspelt required argument is reported once, not also as missing
    for name, value in given.items():
        param = params.get(name)
        if param is None and open_kwargs:
            converted[name] = value
            continue
        if param is None:
            takes = f"{label} takes: {name_list(params)}" if params else f"{label} takes no arguments"
            found.append((name, f"{label} has no argument {name!r}", did_you_mean(str(name), params) or takes))
            suggested.update(difflib.get_close_matches(str(name), list(params), n=1, cutoff=0.6))
            continue
        try:
            converted[name] = param.type.check(value)
        except ArgMismatch as err:
            found.append((name, f"{owner}.{name}: {err}", None))
    if require:
        for param in params.values():
            if param.required and param.name not in given and param.name not in suggested:
                message = f"{label} needs argument {param.name!r}, which is missing"
                found.append((None, message, f"add {param.name}: <value> beside it"))
    return converted, found
