"""``Source``: spec data that remembers where it came from, and the limits on reading it.

In: plain data, the text it was read from and the ``Location`` of every mapping key and
sequence item keyed by spec path (the readers fill these in). Each ``Location`` names its
file, so a spec merged from several files (``frontend.compose``) keeps, for every key and
item, the file and line it was written in; ``texts`` holds those other files' text. Out: ``Problem``s located and
quoted from the text (``Source.problem``), and overrides applied in place
(``Source.with_override``, positions updated). ``to_plain`` turns in-memory data into the
same plain, JSON-like data the readers produce.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import Location, Problem, SpecError, SpecPath, format_path
from .scalars import BREAK, NON_FINITE, kind_of

_MAX_INT_BITS = 3322  # about 1,000 decimal digits, the limit of a spec's integers


@dataclass(frozen=True)
class Limits:
    """Bounds that keep a hostile spec from exhausting time or memory."""

    max_bytes: int = 16 * 1024 * 1024
    max_depth: int = 128  # nesting of mappings/sequences
    max_aliases: int = 1000
    max_nodes: int = 2_000_000  # total nodes after alias expansion
    max_chars: int = 32 * 1024 * 1024  # characters of strings and keys after alias expansion


DEFAULT_LIMITS = Limits()

_MAX_SHOWN = 200  # longest source line quoted in a problem


@dataclass
class Source:
    """Parsed spec data plus the text and positions needed to report problems against it."""

    data: Any
    filename: str
    text: str | None
    positions: dict[SpecPath, Location] = field(default_factory=dict)
    # The text of every other file a merged spec's positions name (extends, imports), by file name.
    texts: dict[str, str] = field(default_factory=dict)
    _lines: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def locate(self, path: SpecPath) -> Location | None:
        """Location of the longest prefix of ``path`` that has one."""
        path = tuple(path)
        for end in range(len(path), -1, -1):
            loc = self.positions.get(path[:end])
            if loc is not None:
                return loc
        return None

    def line_text(self, line: int, file: str | None = None) -> str | None:
        """The 1-based ``line`` of the text of ``file`` (default: this source's own), without its line break."""
        file = self.filename if file is None else file
        text = self.text if file == self.filename else self.texts.get(file)
        if text is None:
            return None
        lines = self._lines.get(file)
        if lines is None:
            lines = self._lines[file] = BREAK.split(text)
        return lines[line - 1] if 1 <= line <= len(lines) else None

    def copy(self) -> Source:
        """An independent copy: data deep-copied, positions and texts copied."""
        return Source(
            to_plain(self.data, (), DEFAULT_LIMITS), self.filename, self.text, dict(self.positions), dict(self.texts)
        )

    def problem(self, path: SpecPath, message: str, *, hint: str | None = None, warning: bool = False) -> Problem:
        """A Problem at ``path``, located and quoted from the text where possible."""
        problem = self.problem_at(self.locate(path), tuple(path), message, hint)
        return dataclasses.replace(problem, severity="warning") if warning else problem

    def problem_at(self, loc: Location | None, path: SpecPath, message: str, hint: str | None = None) -> Problem:
        """A Problem at a known ``loc`` (the readers' positions), quoting its line of this text."""
        line = None
        # Override locations name a pseudo-file; quoting a line of the real text there would mislead.
        if loc is not None and (loc.file == self.filename or loc.file in self.texts):
            line = self.line_text(loc.line, loc.file)
            if line is not None and len(line) > _MAX_SHOWN:  # e.g. minified JSON: show the caret's part
                line = line[:_MAX_SHOWN] + " ..." if loc.column < _MAX_SHOWN else None
        return Problem(message, tuple(path), loc, line, hint)

    def with_override(self, dotted: str, value: Any) -> None:
        """Set ``data[a][b]...`` for ``dotted == "a.b..."``, creating missing intermediate mappings."""
        keys = dotted.split(".", DEFAULT_LIMITS.max_depth)
        if len(keys) > DEFAULT_LIMITS.max_depth:  # the spec could not hold it: refused before any work
            shown = dotted if len(dotted) <= 60 else dotted[:57] + "..."
            message = f"override key {shown!r} is nested more than {DEFAULT_LIMITS.max_depth} levels deep"
            raise SpecError(Problem(message, hint="a spec nests at most that deep (max nesting depth)"))
        if not all(keys):
            hint = "write dotted keys like model.width or model.layers.0.out"
            raise SpecError(Problem(f"override key {dotted!r} has an empty segment", hint=hint))
        # The value sits len(keys) levels down: together they nest no deeper than a spec may.
        room = dataclasses.replace(DEFAULT_LIMITS, max_depth=DEFAULT_LIMITS.max_depth - len(keys))
        new_value = to_plain(value, tuple(keys), room)
        node: Any = self.data
        path: list[str | int] = []
        created: list[SpecPath] = []
        for depth, key in enumerate(keys):
            seg: str | int = key
            if isinstance(node, list):
                if not (key.isascii() and key.isdigit() and int(key) < len(node)):
                    message = f"override {dotted!r}: {key!r} is not an index of this list of {len(node)} items"
                    raise SpecError(self.problem(tuple(path), message))
                seg = int(key)
                child = node[seg]
            elif isinstance(node, dict):
                child = node.get(key)
            else:
                where = format_path(path) or "the spec"
                message = f"cannot set override {dotted!r}: {where} is a {kind_of(node)}, not a mapping or list"
                raise SpecError(self.problem(tuple(path), message))
            path.append(seg)
            if depth == len(keys) - 1:
                child = new_value
            elif child is None:
                child = {}
                created.append(tuple(path))
            elif isinstance(child, (dict, list)):
                child = child.copy()  # YAML aliases share objects: copy so the override hits only this path
            node[seg] = child
            node = child
        target = tuple(path)
        for stale in [p for p in self.positions if p[: len(target)] == target]:
            del self.positions[stale]
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        for p in [*created, target]:
            # Name the spec too: `netspec validate a.yaml b.yaml --set ...` must say which file failed.
            self.positions[p] = Location(f"{self.filename} (--set {dotted}={shown})", 1, 1)


class _NotPlain(Exception):
    """``_copy_plain`` met something only ``to_plain``'s general walk handles (or reports)."""


def _copy_plain(value: Any, depth: int, limits: Limits, count: list[int]) -> Any:
    """A copy of data made only of dicts with str keys, lists, tuples, str, int, float, bool and None,
    within ``limits`` (``count[0]``: nodes seen so far); ``_NotPlain`` for anything else."""
    if depth > limits.max_depth:
        raise _NotPlain
    kind = type(value)
    if kind is dict:
        count[0] += len(value)
        out: Any = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _NotPlain
            t = type(v)
            if t is str or v is None or t is bool:
                out[k] = v
            elif t is int:
                if v.bit_length() > _MAX_INT_BITS:
                    raise _NotPlain
                out[k] = v
            elif t is float:
                if not math.isfinite(v):
                    raise _NotPlain
                out[k] = v
            else:
                out[k] = _copy_plain(v, depth + 1, limits, count)
    elif kind is list or kind is tuple:
        count[0] += len(value)
        out = []
        for v in value:
            t = type(v)
            if t is str or v is None or t is bool:
                out.append(v)
            elif t is int:
                if v.bit_length() > _MAX_INT_BITS:
                    raise _NotPlain
                out.append(v)
            elif t is float:
                if not math.isfinite(v):
                    raise _NotPlain
                out.append(v)
            else:
                out.append(_copy_plain(v, depth + 1, limits, count))
    else:
        raise _NotPlain
    if count[0] > limits.max_nodes:
        raise _NotPlain
    return out


def to_plain(value: Any, path: SpecPath, limits: Limits) -> Any:
    """Deep-copy ``value`` into plain JSON-like containers, rejecting anything JSON cannot hold."""
    t = type(value)
    if t is dict or t is list or t is tuple:
        # Data that is plain already (the common case: a dict written in Python, or parsed JSON) is copied
        # in one recursive pass; anything else — and every problem, worded and ordered as below — goes
        # through the general walk.
        try:
            return _copy_plain(value, 1, limits, [1])
        except (_NotPlain, RecursionError):
            pass
    problems: list[Problem] = []
    holder: list[Any] = [None]
    # (value, path, container, slot, depth): each copy goes into a pre-made slot, so order survives the stack.
    todo: list[tuple[Any, SpecPath, Any, Any, int]] = [(value, path, holder, 0, 1)]
    nodes = 0
    while todo:
        item, where, into, slot, depth = todo.pop()
        nodes += 1
        out: Any = None
        if item is None or type(item) in (str, bool, int):
            out = item
            if type(item) is int and item.bit_length() > _MAX_INT_BITS:
                problems.append(
                    Problem(f"integer with {item.bit_length():,} bits is too large to be a spec value", where)
                )
        elif isinstance(item, str):
            out = str.__str__(item)  # str() of a (str, Enum) member would give "Color.RED"
        elif isinstance(item, int):
            out = int(item)
            if out.bit_length() > _MAX_INT_BITS:
                problems.append(
                    Problem(f"integer with {out.bit_length():,} bits is too large to be a spec value", where)
                )
        elif isinstance(item, float):  # also float subclasses such as numpy.float64
            out = float(item)
            if not math.isfinite(out):
                problems.append(Problem(f"{out} is not allowed: {NON_FINITE}", where))
        elif isinstance(item, (Mapping, list, tuple)):
            if depth > limits.max_depth or nodes > limits.max_nodes:
                what = f"nested more than {limits.max_depth} deep" if depth > limits.max_depth else "too big"
                problems.append(Problem(f"the data is {what} (does a container contain itself?)", where))
                break
            pairs = list(item.items()) if isinstance(item, Mapping) else list(enumerate(item))
            if isinstance(item, Mapping):
                for k, _ in pairs:
                    if not isinstance(k, str):
                        problems.append(Problem(f"mapping keys must be strings, not {kind_of(k)} {k!r}", where))
                pairs = [(k, v) for k, v in pairs if isinstance(k, str)]
                out = dict.fromkeys(k for k, _ in pairs)
            else:
                out = [None] * len(pairs)
            todo.extend((v, (*where, k), out, k, depth + 1) for k, v in reversed(pairs))
        else:
            hint = "use strings, numbers, booleans, null, lists and mappings"
            problems.append(Problem(f"a spec cannot hold a {type(item).__name__} value", where, hint=hint))
        into[slot] = out
    if problems:
        raise SpecError(problems)
    return holder[0]
