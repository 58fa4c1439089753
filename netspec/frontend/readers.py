"""Stage 1, the readers: YAML and JSON text -> plain data plus the position of every key and item.

In: a ``Source`` holding the text, and the ``Limits``. Out: ``source.data`` and
``source.positions`` filled in, or a ``SpecError``. YAML is read from PyYAML's event stream
(libyaml when available) with YAML 1.2 core-schema scalars; JSON with an own strict
tokenizer. Both build the tree with an explicit stack, never recursion, and count depth,
aliases and expanded size as they go.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import Location, Problem, SpecError, SpecPath

if TYPE_CHECKING:
    from .source import Limits, Source

# libyaml counts these as line breaks too; splitting on the same ones keeps line numbers in step.
BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
NON_FINITE = "JSON cannot hold inf/nan; write the string 'inf' where torch accepts it"

# ---------------------------------------------------------------------------------------------------------
# Scalars (YAML 1.2 core schema)

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
_CORE = "tag:yaml.org,2002:"
_TAG_TYPES = {"null": (type(None),), "bool": (bool,), "int": (int,), "float": (float, int)}


class _ScalarError(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def _to_int(text: str) -> int:
    try:
        return int(text) if _INT10.fullmatch(text) else int(text, 0)  # 0o / 0x prefixes
    except ValueError:  # Python refuses to convert integers of more than ~4300 digits
        raise _ScalarError(f"integer {text[:20]}... has too many digits") from None


def _to_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _ScalarError(f"{text} is out of range for a 64-bit float")
    return value


def _resolve_plain(text: str) -> Any:
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
        raise _ScalarError(f"{text} is not allowed: {NON_FINITE}")
    return text


def _show_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag


def _unsupported_tag(tag: str) -> _ScalarError:
    return _ScalarError(
        f"unsupported tag {_show_tag(tag)}: netspec reads plain YAML only",
        hint="remove the tag; specs hold only strings, numbers, booleans, null, lists and mappings",
    )


def _resolve_tagged(tag: str, text: str) -> Any:
    name = tag.removeprefix(_CORE) if tag.startswith(_CORE) else None
    if tag == "!" or name == "str":
        return text
    if name in _TAG_TYPES:
        value = _resolve_plain(text)
        if type(value) in _TAG_TYPES[name]:
            return float(value) if name == "float" else value
        raise _ScalarError(f"{text!r} is not a valid !!{name}")
    if name in ("map", "seq"):
        raise _ScalarError(f"!!{name} cannot tag a scalar")
    raise _unsupported_tag(tag)


def parse_scalar(text: str) -> Any:
    """Resolve one plain scalar (a CLI ``--set`` value) with the YAML 1.2 core schema."""
    try:
        return _resolve_plain(text)
    except _ScalarError as err:
        raise SpecError(Problem(err.message, hint=err.hint)) from None


def kind_of(value: Any) -> str:
    names = {dict: "mapping", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# ---------------------------------------------------------------------------------------------------------
# YAML


_START_EVENTS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_NODE_EVENTS = (yaml.ScalarEvent, yaml.AliasEvent, *_START_EVENTS)
_END_EVENTS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


class _Abort(Exception):
    """Stop consuming input; the problems gathered so far are raised."""


class _Frame:
    __slots__ = ("anchor", "is_map", "key", "nodes_before", "path", "value")

    def __init__(self, value: Any, path: SpecPath, anchor: str | None, nodes_before: int) -> None:
        self.value, self.path, self.anchor, self.nodes_before = value, path, anchor, nodes_before
        self.is_map = isinstance(value, dict)
        self.key: str | None = None  # None while the next node is a key


def parse_yaml(src: Source, limits: Limits) -> None:
    """Fill ``src.data`` and ``src.positions`` from parser events, keeping open containers on a stack."""
    problems: list[Problem] = []
    fname = src.filename

    def add(mark: Any, path: SpecPath, message: str, hint: str | None = None) -> None:
        problems.append(src._problem_at(Location(fname, mark.line + 1, mark.column + 1), path, message, hint))

    positions = src.positions
    stack: list[_Frame] = []
    anchors: dict[str, tuple[Any, int]] = {}  # name -> (value, node count including alias expansion)
    root: Any = None
    nodes = aliases = documents = 0
    loader_cls = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
    loader = None
    try:
        loader = loader_cls(src.text)
        while loader.check_event():
            ev = loader.get_event()
            cls = ev.__class__
            mark = ev.start_mark
            if cls in _END_EVENTS:
                done = stack.pop()
                if done.anchor is not None:
                    anchors[done.anchor] = (done.value, nodes - done.nodes_before)
                continue
            if cls is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    add(mark, (), "a spec holds exactly one YAML document; found a second one here")
                    raise _Abort
                positions[()] = Location(fname, mark.line + 1, mark.column + 1)
                continue
            if cls not in _NODE_EVENTS:
                continue  # stream and document ends carry nothing
            parent = stack[-1] if stack else None
            is_key = parent is not None and parent.is_map and parent.key is None
            if parent is None:
                path: SpecPath = ()
            elif parent.is_map:
                path = parent.path if is_key else (*parent.path, parent.key)  # type: ignore[misc]
            else:
                path = (*parent.path, len(parent.value))
                positions[path] = Location(fname, mark.line + 1, mark.column + 1)

            value: Any
            if cls is yaml.ScalarEvent:
                nodes += 1
                try:
                    if ev.tag is None and ev.implicit[0]:
                        value = _resolve_plain(ev.value)
                    elif ev.tag is None:
                        value = ev.value
                    else:
                        value = _resolve_tagged(ev.tag, ev.value)
                except _ScalarError as err:
                    add(mark, path, err.message, err.hint)
                    value = ev.value
                if ev.anchor is not None:
                    anchors[ev.anchor] = (value, 1)
            elif cls is yaml.AliasEvent:
                name = ev.anchor
                if name in anchors:
                    value, size = anchors[name]
                    aliases += 1
                    nodes += size
                    if aliases > limits.max_aliases:
                        add(mark, path, f"more than {limits.max_aliases} aliases (alias bomb?)")
                        raise _Abort
                elif any(frame.anchor == name for frame in stack):
                    add(mark, path, f"alias *{name} refers to a node that contains it")
                    value = None
                else:
                    add(mark, path, f"unknown alias *{name}", f"define the anchor &{name} before using it")
                    value = None
            else:
                nodes += 1
                if len(stack) >= limits.max_depth:
                    add(mark, path, f"nested more than {limits.max_depth} levels deep (max nesting depth)")
                    raise _Abort
                is_map = cls is yaml.MappingStartEvent
                value = {} if is_map else []
                if ev.tag not in (None, "!", _CORE + ("map" if is_map else "seq")):
                    err = _unsupported_tag(ev.tag)
                    if ev.tag.removeprefix(_CORE) in (*_TAG_TYPES, "map", "seq", "str"):
                        err = _ScalarError(f"{_show_tag(ev.tag)} cannot tag a {kind_of(value)}")
                    add(mark, path, err.message, err.hint)
            if nodes > limits.max_nodes:
                add(mark, path, f"spec expands to more than {limits.max_nodes} values (alias bomb?)")
                raise _Abort

            if is_key and parent is not None:
                parent.key = _check_key(ev, value, parent, src, add)
            elif parent is None:
                root = value
            elif parent.is_map:
                parent.value[parent.key] = value
                parent.key = None
            else:
                parent.value.append(value)
            if cls in _START_EVENTS:
                stack.append(_Frame(value, path, ev.anchor, nodes - 1))
    except _Abort:
        pass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        message = err.problem or err.context or "invalid YAML"
        if err.context and err.problem:
            at = f" at line {err.context_mark.line + 1}" if err.context_mark else ""
            message += f" ({err.context}{at})"
        line = src.line_text(mark.line + 1) if mark is not None else None
        tab = line is not None and "\t" in line[: mark.column + 1]
        hint = "indent YAML with spaces, not tabs" if tab else None
        where = stack[-1].path if stack else ()
        if mark is not None:
            add(mark, where, message, hint)
        else:
            problems.append(Problem(message, where, hint=hint))
    except yaml.reader.ReaderError as err:
        char = err.character if isinstance(err.character, int) else ord(err.character)
        _add_at_offset(src, problems, err.position, f"{err.reason} (character {char:#x})")
    except UnicodeEncodeError as err:
        _add_at_offset(src, problems, err.start, "text contains an unpaired surrogate character")
    finally:
        if loader is not None:
            loader.dispose()
    if problems:
        raise SpecError(problems)
    if documents == 0:
        message = "empty spec: the file holds no YAML document"
        raise SpecError(src._problem_at(Location(fname, 1, 1), (), message))
    src.data = root


def _check_key(ev: Any, value: Any, parent: _Frame, src: Source, add: Any) -> str:
    """Validate a mapping key and record its position; returns the key to store its value under."""
    mark = ev.start_mark
    if not isinstance(value, str):
        if isinstance(value, (dict, list)):
            add(mark, parent.path, f"mapping keys must be strings, not a {kind_of(value)}")
            return f"<{kind_of(value)} key>"
        shown = ev.value if ev.__class__ is yaml.ScalarEvent else repr(value)
        message = f"mapping keys must be strings, not {kind_of(value)} {shown}"
        add(mark, parent.path, message, f"quote it: '{shown}'")
        return str(shown)
    path = (*parent.path, value)
    if value == "<<" and ev.__class__ is yaml.ScalarEvent and ev.tag is None and ev.implicit[0]:
        add(mark, parent.path, "merge keys (<<) are not supported", "share settings with vars or blocks")
    elif value in parent.value:
        first = src.positions.get(path)
        where = f" (first at line {first.line})" if first is not None else ""
        add(mark, path, f"duplicate key {value!r}{where}")
    else:
        src.positions[path] = Location(src.filename, mark.line + 1, mark.column + 1)
    return value


def _add_at_offset(src: Source, problems: list[Problem], offset: int, message: str) -> None:
    text = src.text or ""
    offset = min(max(offset, 0), len(text))
    head = BREAK.split(text[:offset])
    problems.append(src._problem_at(Location(src.filename, len(head), len(head[-1]) + 1), (), message))


# ---------------------------------------------------------------------------------------------------------
# JSON: a strict RFC 8259 parser, iterative so depth is bounded by Limits rather than the C stack.

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
        problems.append(src._problem_at(loc(offset), path, message, hint))
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
                problems.append(src._problem_at(loc(0), (), "empty spec: the file holds no JSON value"))
            else:
                fail(len(text), cpath, "unexpected end of JSON input")
    except _Abort:
        pass
    if problems:
        raise SpecError(problems)
    src.data = root
