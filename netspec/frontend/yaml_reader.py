"""The YAML reader: YAML text -> plain data plus the position of every key and item.

In: a ``Source`` holding the text, and the ``Limits``. Out: ``source.data`` and
``source.positions`` filled in, or a ``SpecError``. Read from PyYAML's event stream (libyaml
when available) with YAML 1.2 core-schema scalars (``scalars``); the tree is built with an
explicit stack, never recursion, counting depth, aliases and expanded size (values and the
characters of strings and keys, an alias counting all it stands for) as it goes.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import Location, Problem, SpecError, SpecPath
from .positions import Limits, Source
from .refscan import mask
from .scalars import (
    BREAK,
    CORE,
    TAG_TYPES,
    ScalarError,
    kind_of,
    resolve_plain,
    resolve_tagged,
    show_tag,
    unsupported_tag,
)

_START_EVENTS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_NODE_EVENTS = (yaml.ScalarEvent, yaml.AliasEvent, *_START_EVENTS)
_END_EVENTS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


class _Abort(Exception):
    """Stop consuming input; the problems gathered so far are raised."""


class _Frame:
    __slots__ = ("anchor", "chars_before", "is_map", "key", "nodes_before", "path", "value")

    def __init__(self, value: Any, path: SpecPath, anchor: str | None, nodes_before: int, chars_before: int) -> None:
        self.value, self.path, self.anchor, self.nodes_before = value, path, anchor, nodes_before
        self.chars_before = chars_before
        self.is_map = isinstance(value, dict)
        self.key: str | None = None  # None while the next node is a key


# libyaml (0.2.5+) stops at its own nesting limit of about 1000 flow levels while scanning ahead,
# before netspec's smaller limit is reached: its message is replaced with netspec's own, and a text
# up to this size is parsed again with PyYAML's pure-Python parser, which reaches netspec's limit at
# the exact place (the spec path of the first level too deep).
_LIBYAML_NESTING = "exceeded maximum nesting depth"
_REPARSE_BYTES = 1 << 20
_FLOW_HINT = (
    "inside {...} and [...], quote a value that holds ',', '[', ']', '{', '}' or ': ' ('...'), and close every "
    "bracket; ${...} may stay unquoted"
)


def _flow_problem(err: yaml.MarkedYAMLError) -> tuple[str, str]:
    """PyYAML's message for a broken flow collection, said with the bracket it is about, and a hint."""
    kind = "{...}" if "mapping" in (err.context or "") else "[...]"
    mark = err.context_mark
    at = f" opened at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{err.problem} in the {kind}{at}", _FLOW_HINT


def parse_yaml(src: Source, limits: Limits, *, pure: bool = False) -> None:
    """Fill ``src.data`` and ``src.positions`` from parser events, keeping open containers on a stack.

    ``pure`` uses PyYAML's Python parser even where libyaml is available. Unquoted ``${...}`` are
    masked first (``refscan``), so that flow collections may hold them.
    """
    masked = mask(src.text or "")
    problems: list[Problem] = []
    fname = src.filename

    def add(mark: Any, path: SpecPath, message: str, hint: str | None = None) -> None:
        problems.append(src.problem_at(Location(fname, mark.line + 1, mark.column + 1), path, message, hint))

    positions = src.positions
    stack: list[_Frame] = []
    # name -> (value, its node count and characters, alias expansion included)
    anchors: dict[str, tuple[Any, int, int]] = {}
    root: Any = None
    nodes = aliases = documents = chars = 0
    loader_cls = yaml.CSafeLoader if yaml.__with_libyaml__ and not pure else yaml.SafeLoader
    loader = None
    reparse = False
    try:
        loader = loader_cls(masked.text)
        while loader.check_event():
            ev = loader.get_event()
            cls = ev.__class__
            mark = ev.start_mark
            if cls in _END_EVENTS:
                done = stack.pop()
                if done.anchor is not None:
                    anchors[done.anchor] = (done.value, nodes - done.nodes_before, chars - done.chars_before)
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
                text = masked.restore(ev.value, mark.index, ev.end_mark.index) if masked.mark else ev.value
                chars += len(text)
                try:
                    if ev.tag is None and ev.implicit[0]:
                        value = resolve_plain(text)
                    elif ev.tag is None:
                        value = text
                    else:
                        value = resolve_tagged(ev.tag, text)
                except ScalarError as err:
                    add(mark, path, err.message, err.hint)
                    value = text
                if ev.anchor is not None:
                    anchors[ev.anchor] = (value, 1, len(text))
            elif cls is yaml.AliasEvent:
                name = ev.anchor
                if name in anchors:
                    value, size, length = anchors[name]
                    aliases += 1
                    nodes += size
                    chars += length
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
                if ev.tag not in (None, "!", CORE + ("map" if is_map else "seq")):
                    err = unsupported_tag(ev.tag)
                    if ev.tag.removeprefix(CORE) in (*TAG_TYPES, "map", "seq", "str"):
                        err = ScalarError(f"{show_tag(ev.tag)} cannot tag a {kind_of(value)}")
                    add(mark, path, err.message, err.hint)
            if nodes > limits.max_nodes:
                add(mark, path, f"spec expands to more than {limits.max_nodes} values (alias bomb?)")
                raise _Abort
            if chars > limits.max_chars:
                message = f"spec expands to more than {limits.max_chars:,} characters of text (alias bomb?)"
                add(mark, path, message, "an alias counts the whole text of the node it refers to, every time")
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
                stack.append(_Frame(value, path, ev.anchor, nodes - 1, chars))
    except _Abort:
        pass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        message = err.problem or err.context or "invalid YAML"
        hint = None
        if message == _LIBYAML_NESTING:
            reparse = loader_cls is not yaml.SafeLoader and (mark is None or mark.index <= _REPARSE_BYTES)
            message = f"nested more than {limits.max_depth} levels deep (max nesting depth)"
        elif err.context and "flow" in err.context and err.problem:
            message, hint = _flow_problem(err)
        elif err.context and err.problem:
            at = f" at line {err.context_mark.line + 1}" if err.context_mark else ""
            message += f" ({err.context}{at})"
        line = src.line_text(mark.line + 1) if mark is not None else None
        tab = line is not None and "\t" in line[: mark.column + 1]
        hint = "indent YAML with spaces, not tabs" if tab else hint
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
    if reparse:
        src.positions.clear()
        parse_yaml(src, limits, pure=True)
        return
    if problems:
        raise SpecError(problems)
    if documents == 0:
        message = "empty spec: the file holds no YAML document"
        raise SpecError(src.problem_at(Location(fname, 1, 1), (), message))
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
    problems.append(src.problem_at(Location(src.filename, len(head), len(head[-1]) + 1), (), message))
