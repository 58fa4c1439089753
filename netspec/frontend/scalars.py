"""YAML 1.2 core-schema scalars: plain text -> null, bool, int, float or str.

In: the text of one plain (or tagged) scalar. Out: its value, or ``ScalarError`` with a message
and a hint (``parse_scalar`` turns it into a ``SpecError``, for ``--set`` values). ``kind_of``
names a value's kind for messages; ``BREAK`` splits text into lines exactly as libyaml counts
them. Shared by both readers and by ``source``.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..errors import Problem, SpecError

# libyaml counts these as line breaks too; splitting on the same ones keeps line numbers in step.
BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
NON_FINITE = "JSON cannot hold inf/nan; write the string 'inf' where torch accepts it"

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_INT10 = re.compile(r"[-+]?[0-9]+")
_INT8 = re.compile(r"0o[0-7]+")
_INT16 = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_INF_NAN = re.compile(r"[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
# Only these characters can start a plain scalar that is not a string; most names skip every regex.
_MAYBE_RESOLVED = frozenset("0123456789+-.~nNtTfF")
CORE = "tag:yaml.org,2002:"
TAG_TYPES = {"null": (type(None),), "bool": (bool,), "int": (int,), "float": (float, int)}


class ScalarError(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


MAX_INT_DIGITS = 1000  # as for ${} results: beyond any real size, and Python cannot print much longer ints


def _to_int(text: str) -> int:
    digits = len(text.lstrip("+-").removeprefix("0x").removeprefix("0o"))
    if digits > MAX_INT_DIGITS:  # hex and octal have no conversion limit, but the result cannot be printed
        raise ScalarError(f"integer {text[:20]}... has {digits:,} digits; the limit is {MAX_INT_DIGITS:,}")
    try:
        return int(text) if _INT10.fullmatch(text) else int(text, 0)  # 0o / 0x prefixes
    except ValueError:  # Python refuses to convert integers of more than ~4300 digits
        raise ScalarError(f"integer {text[:20]}... has too many digits") from None


def _to_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ScalarError(f"{text} is out of range for a 64-bit float")
    return value


def resolve_plain(text: str) -> Any:
    if not text:
        return None
    if text[0] not in _MAYBE_RESOLVED:
        return text
    if text in _NULLS:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _INT10.fullmatch(text) or _INT8.fullmatch(text) or _INT16.fullmatch(text):
        return _to_int(text)
    if _FLOAT.fullmatch(text):
        return _to_float(text)
    if _INF_NAN.fullmatch(text):
        raise ScalarError(f"{text} is not allowed: {NON_FINITE}")
    return text


def show_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(CORE) if tag.startswith(CORE) else tag


def unsupported_tag(tag: str) -> ScalarError:
    return ScalarError(
        f"unsupported tag {show_tag(tag)}: netspec reads plain YAML only",
        hint="remove the tag; specs hold only strings, numbers, booleans, null, lists and mappings",
    )


def resolve_tagged(tag: str, text: str) -> Any:
    name = tag.removeprefix(CORE) if tag.startswith(CORE) else None
    if tag == "!" or name == "str":
        return text
    if name in TAG_TYPES:
        value = resolve_plain(text)
        if type(value) in TAG_TYPES[name]:
            return float(value) if name == "float" else value
        raise ScalarError(f"{text!r} is not a valid !!{name}")
    if name in ("map", "seq"):
        raise ScalarError(f"!!{name} cannot tag a scalar")
    raise unsupported_tag(tag)


def parse_scalar(text: str) -> Any:
    """Resolve one plain scalar (a CLI ``--set`` value) with the YAML 1.2 core schema."""
    try:
        return resolve_plain(text)
    except ScalarError as err:
        raise SpecError(Problem(err.message, hint=err.hint)) from None


def kind_of(value: Any) -> str:
    names = {dict: "mapping", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)
