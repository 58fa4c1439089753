"""The JSON reader: JSON text -> plain data plus the position of every key and item.

In: a ``Source`` holding the text, and the ``Limits``. Out: ``source.data`` and
``source.positions`` filled in, or a ``SpecError``. A strict RFC 8259 tokenizer of its own
(no NaN, no duplicate keys, exact positions), iterative so depth is bounded by ``Limits``
rather than the C stack.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from typing import Any

from ..errors import Location, Problem, SpecError, SpecPath
from .positions import Limits, Source
from .scalars import BREAK, NON_FINITE


class _Abort(Exception):
    """Stop consuming input; the problems gathered so far are raised."""


# One token per match: an optional leading comma, then a string (with ':' if it is a key), a bracket, a
# number, a literal, or the end. Folding commas and colons into tokens halves the Python-level loop.
_JSON_TOKEN = re.compile(
    r"""[ \t\n\r]*(?P<comma>,[ \t\n\r]*)?(?:
      (?P<str>"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*")(?P<key>[ \t\n\r]*:)?
    | (?P<open>[{\[])
    | (?P<close>[}\]])
    | (?P<num>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)(?![\w.+-])
    | (?P<word>true|false|null)(?!\w)
    | (?P<eof>\Z)
    | (?P<nonfinite>(?:-?Infinity|NaN)(?!\w))
    | (?P<badnum>[-+.0-9][\w.+-]*)
    | (?P<other>\w+|.)
    )""",
    re.VERBOSE | re.DOTALL,
)
_WORDS = {"true": True, "false": False, "null": None}
# Parser states: a value follows (_VALUE); just inside a bracket (_OPENED) or after a comma (_NEXT), a key
# follows in a mapping and a value in a list; after a value a comma or closer follows (_SEP); _END: done.
_VALUE, _OPENED, _NEXT, _SEP, _END = range(5)
_JSON_HINTS = {
    "'": "JSON strings need double quotes",
    "/": "JSON does not allow comments",
    "#": "JSON does not allow comments",
    '"': "a string is unterminated, or holds a raw control character or a bad escape",
    "badnum": "JSON numbers look like -1, 0.5 or 1e-3",
    "other": "JSON literals are true, false and null; strings need double quotes",
}


def parse_json(src: Source, limits: Limits) -> None:
    """Fill ``src.data`` and ``src.positions`` from strict RFC 8259 JSON; open containers live on a stack."""
    text = src.text or ""
    fname = src.filename
    line_ends = [m.end() for m in BREAK.finditer(text)]
    line_ends.append(len(text) + 1)  # sentinel, so next_break always exists
    li, line_start, next_break = 0, 0, line_ends[0]
    problems: list[Problem] = []
    positions = src.positions

    def loc(offset: int) -> Location:
        line = bisect.bisect_right(line_ends, offset)
        return Location(fname, line + 1, offset - (line_ends[line - 1] if line else 0) + 1)

    def fail(offset: int, path: SpecPath, message: str, hint: str | None = None) -> _Abort:
        problems.append(src.problem_at(loc(offset), path, message, hint))
        return _Abort()

    def got(m: re.Match[str], kind: str) -> str:
        tok = m.group(kind) if kind != "key" else m.group("str") + ":"
        return repr(tok[:30] + "..." if len(tok) > 30 else tok) if tok else "end of input"

    def start(m: re.Match[str], kind: str) -> int:
        return m.start("str") if kind == "key" else m.start(kind)

    def hint(m: re.Match[str], kind: str) -> str | None:
        return _JSON_HINTS.get(m.group(kind)[:1]) or _JSON_HINTS.get(kind)

    # The innermost open container is cached in locals: this loop is the hot path for large files.
    stack: list[tuple[Any, SpecPath]] = []
    container: Any = None
    cpath: SpecPath = ()
    is_map, closer, state = False, "", _VALUE
    key = ""
    root: Any = None
    nodes = 0
    try:
        for m in _JSON_TOKEN.finditer(text):
            kind = m.lastgroup
            if m.start("comma") >= 0:
                if state != _SEP:
                    raise fail(m.start("comma"), cpath, "unexpected ','")
                if kind == "close":
                    raise fail(m.start("comma"), cpath, f"trailing comma before '{closer}' is not allowed in JSON")
                state = _NEXT
            elif state in (_SEP, _OPENED):
                if kind == "close" and m.group(kind) == closer:
                    stack.pop()
                    if stack:
                        container, cpath = stack[-1]
                        is_map = type(container) is dict
                        closer, state = ("}" if is_map else "]"), _SEP
                    else:
                        state = _END
                    continue
                if state == _SEP:
                    if kind == "eof":
                        break
                    raise fail(start(m, kind), cpath, f"expected ',' or '{closer}', got {got(m, kind)}")
            elif state == _END:
                if kind == "eof":
                    break
                raise fail(start(m, kind), (), f"unexpected {got(m, kind)} after the JSON document")
            if kind == "eof":
                break
            if is_map and state != _VALUE:
                pos = m.start("str")
                if kind != "key":
                    what = f"':' after key {m.group(kind)}" if kind == "str" else "a key in double quotes"
                    raise fail(m.start(kind), cpath, f"expected {what}, got {got(m, kind)}", hint(m, kind))
                key = m.group("str")
                key = json.loads(key) if "\\" in key else key[1:-1]
                path = (*cpath, key)
                if key in container:
                    fail(pos, path, f"duplicate key {key!r} (first at line {positions[path].line})")
                else:
                    if pos >= next_break:
                        li = bisect.bisect_right(line_ends, pos, li)
                        line_start, next_break = line_ends[li - 1], line_ends[li]
                    positions[path] = Location(fname, li + 1, pos - line_start + 1)
                state = _VALUE
                continue
            # A value is expected here.
            pos = m.start(kind)
            value: Any
            if kind == "str":
                value = m.group(kind)
                value = json.loads(value) if "\\" in value else value[1:-1]
            elif kind == "num":
                tok = m.group(kind)
                try:
                    value = float(tok) if ("." in tok or "e" in tok or "E" in tok) else int(tok)
                    if value.__class__ is float and math.isinf(value):
                        raise ValueError
                except ValueError:  # also Python's limit of ~4300 digits on int()
                    shown = tok if len(tok) <= 20 else tok[:20] + "..."
                    fail(pos, (*cpath, key) if is_map else cpath, f"number {shown} is out of range")
                    value = None
            elif kind == "word":
                value = _WORDS[m.group(kind)]
            elif kind == "open":
                if len(stack) >= limits.max_depth:
                    raise fail(pos, cpath, f"nested more than {limits.max_depth} levels deep (max nesting depth)")
                value = {} if m.group(kind) == "{" else []
            elif kind == "nonfinite":
                fail(pos, (*cpath, key) if is_map else cpath, f"{m.group(kind)} is not allowed: {NON_FINITE}")
                value = None
            else:
                what = "':' after a value" if kind == "key" else got(m, kind)
                raise fail(pos, cpath, f"expected a value, got {what}", hint(m, kind))
            nodes += 1
            if nodes > limits.max_nodes:
                raise fail(pos, cpath, f"spec holds more than {limits.max_nodes} values")
            if not stack:
                root, path = value, ()
                positions[()] = loc(pos)
            elif is_map:
                container[key] = value
                path = (*cpath, key)
            else:
                if pos >= next_break:
                    li = bisect.bisect_right(line_ends, pos, li)
                    line_start, next_break = line_ends[li - 1], line_ends[li]
                path = (*cpath, len(container))
                positions[path] = Location(fname, li + 1, pos - line_start + 1)
                container.append(value)
            if kind == "open":
                stack.append((value, path))
                container, cpath, is_map = value, path, type(value) is dict
                closer, state = ("}" if is_map else "]"), _OPENED
            else:
                state = _SEP if stack else _END
        if state != _END:
            if nodes == 0 and not problems:
                problems.append(src.problem_at(loc(0), (), "empty spec: the file holds no JSON value"))
            else:
                fail(len(text), cpath, "unexpected end of JSON input")
    except _Abort:
        pass
    if problems:
        raise SpecError(problems)
    src.data = root
