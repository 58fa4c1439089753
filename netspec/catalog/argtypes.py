"""Argument types of layer constructors, derived from their Python annotations.

In: a constructor parameter (its annotation and default). Out: an ``ArgType`` that checks
a JSON-like value from a spec, converts it to what torch expects (lists become tuples where
torch takes tuples, number lists become tensors where torch takes a tensor), describes
itself for error messages ("int or [int, int]") and renders itself as JSON Schema.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn as nn

Kind = Literal["any", "int", "float", "bool", "str", "none", "literal", "tuple", "list", "union", "tensor", "node"]


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
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def describe(self) -> str:
        if self.kind == "union":
            return " or ".join(dict.fromkeys(o.describe() for o in self.options))
        if self.kind == "literal":
            return "one of " + ", ".join(repr(v) for v in self.values)
        if self.kind == "tuple" and not self.variadic:
            return "[" + ", ".join(i.describe() for i in self.items) + "]"
        if self.kind in ("tuple", "list"):
            return f"list of {self.items[0].describe()}"
        if self.kind == "tensor":
            return "list of numbers (a tensor)"
        if self.kind == "node":
            return "a layer node"
        return {"none": "null", "any": "any value"}.get(self.kind, self.kind)

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
            return {"anyOf": [o.json_schema() for o in self.options]}
        if kind == "literal":
            return {"enum": list(self.values)}
        if kind == "tuple" and not self.variadic:
            items = [i.json_schema() for i in self.items]
            return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
        if kind in ("tuple", "list"):
            return {"type": "array", "items": self.items[0].json_schema()}
        if kind == "tensor":
            return {"type": "array"}
        if kind == "node":
            return {"$ref": "#/$defs/Node"}
        simple = {"int": "integer", "float": "number", "bool": "boolean", "str": "string", "none": "null"}
        return {"type": simple[kind]} if kind in simple else {}


def _is_number_tree(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_is_number_tree(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


ANY = ArgType("any")
_MODULE_NAMES = {"Module", "TransformerEncoderLayer", "TransformerDecoderLayer"}


def from_annotation(annotation: Any, default: Any = inspect.Parameter.empty) -> ArgType:
    """Translate a constructor annotation (or, when there is none, its default) to an ``ArgType``."""
    if annotation is inspect.Parameter.empty:
        return _from_default(default)
    if isinstance(annotation, str):
        # Forward references torch leaves unresolved: module classes and typing names.
        names = {part.strip() for part in annotation.replace("|", ",").split(",")}
        if names & _MODULE_NAMES or any("Module" in n for n in names):
            return ArgType("union", options=(ArgType("node"), ArgType("none")))
        return ANY
    if annotation is Any or annotation is object:
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
    if isinstance(annotation, type) and issubclass(annotation, nn.Module):
        return ArgType("node")
    if isinstance(annotation, typing.TypeVar):
        return ANY
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        # A Callable member (activation functions) maps to "none": a spec names the function as a str.
        options = tuple(dict.fromkeys(from_annotation(a) for a in args))
        return options[0] if len(options) == 1 else ArgType("union", options=options)
    if origin is Literal:
        return ArgType("literal", values=tuple(args))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return ArgType("tuple", items=(from_annotation(args[0]),), variadic=True)
        return ArgType("tuple", items=tuple(from_annotation(a) for a in args))
    if origin in (list, collections.abc.Sequence, collections.abc.Iterable):
        element = from_annotation(args[0]) if args else ANY
        return ArgType("list", items=(element,))
    if origin is collections.abc.Callable:
        # Not expressible in a spec; callers accept a function name where torch does (str member).
        return ArgType("none", meta={"callable": True})
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
