"""Stage 1b, composition: ``extends`` and ``imports`` merged into one self-contained source.

In: a loaded ``Source`` (a spec file, or a dict) and the search path (folders files may be read
from; default: the top-level spec's folder). Out: a ``Source`` whose data holds no ``extends``,
``imports``, ``_replace_`` or ``_remove_`` and whose positions remember, for every key and item,
the file and line it was written in (base, child or block library), so that every later problem
points at the file that wrote the offending value. ``texts`` carries the other files' text for
quoting. A ``SpecError`` lists every composition problem found, located where the path was named.

Merge rules (contract section 6): mappings merge key by key, recursively, the base's keys first
and the child's new keys after them; scalars and lists replace; ``{_replace_: true, ...}``
replaces the base's value; ``{_remove_: true}`` removes the base's key. ``extends`` may be a list,
merged in order (each later base patches the earlier ones), before the child. ``imports`` adds
the ``blocks:`` of block-library files; a block name defined in two files is an error.

Paths are relative to the file naming them and must stay inside the search path: absolute paths,
``..`` leading out, symlinks leading out, non-regular files (folders, FIFOs, devices) and cycles
are refused. No torch here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import Location, Problem, ProblemList, SpecError, SpecPath, did_you_mean, format_path
from .scalars import kind_of
from .search_path import SearchPath, default_search_path
from .source import Source, load_file

REPLACE, REMOVE = "_replace_", "_remove_"
MARKERS = (REPLACE, REMOVE)
COMPOSE_KEYS = ("extends", "imports")
# An imported file brings in blocks; it may say which format it is in and import other libraries.
_LIBRARY_KEYS = ("netspec", "blocks", "imports")
MAX_FILES = 256  # distinct files one composition may read


@dataclass
class _Part:
    """One composed file: its data and positions (markers already applied)."""

    data: Any
    positions: dict[SpecPath, Location]


@dataclass
class _Composer:
    search: SearchPath
    problems: ProblemList = field(default_factory=ProblemList)
    texts: dict[str, str] = field(default_factory=dict)
    files_read: int = 0

    # -- paths ------------------------------------------------------------------------------------------

    def resolve(self, naming: Source, path: SpecPath, value: Any, what: str) -> tuple[str, str] | None:
        """The (display name, real path) of the file ``value`` names, or None after reporting why not."""
        found = self.search.resolve(naming, path, value, what)
        if isinstance(found, Problem):
            self.problems.add(found)
            return None
        return found

    def load(self, naming: Source, path: SpecPath, display: str, real: str) -> Source | None:
        self.files_read += 1
        if self.files_read > MAX_FILES:
            self.problems.add(naming.problem(path, f"composition reads more than {MAX_FILES} files"))
            return None
        try:
            source = load_file(real)
        except SpecError as err:
            self.problems.extend(_renamed(p, real, display) for p in err.problems)
            return None
        source = _rename(source, real, display)
        self.texts[display] = source.text or ""
        return source

    def entries(self, source: Source, key: str) -> list[tuple[SpecPath, Any]]:
        value = source.data.get(key)
        if isinstance(value, list):
            return [((key, i), item) for i, item in enumerate(value)]
        return [((key,), value)]

    # -- composing --------------------------------------------------------------------------------------

    def compose(self, source: Source, chain: list[tuple[str, str]]) -> _Part:
        """``source`` with its bases merged under it and its imports' blocks added."""
        data = source.data
        if not isinstance(data, dict) or not any(k in data for k in COMPOSE_KEYS):
            self.check_no_markers(source, data, (), "a spec that extends no other")
            return _Part(data, source.positions)
        part: _Part | None = None
        for path, name in self.entries(source, "extends") if "extends" in data else []:
            base = self.follow(source, path, name, chain, "extends")
            if base is None:
                continue
            if not isinstance(base.data, dict):
                continue  # reported by the base's own validation below
            part = base if part is None else self.merge_parts(part, base)
        child = {k: v for k, v in data.items() if k not in COMPOSE_KEYS}
        if part is None:
            self.check_no_markers(source, child, (), "a spec that extends no other")
            merged = _Part(child, {p: loc for p, loc in source.positions.items() if not p or p[0] not in COMPOSE_KEYS})
        else:
            positions: dict[SpecPath, Location] = {}
            value = self.merge(part.data, part.positions, child, source, (), positions)
            merged = _Part(value, positions)
        if "imports" in data:
            self.add_imports(source, merged, chain)
        return merged

    def follow(
        self, naming: Source, path: SpecPath, name: Any, chain: list[tuple[str, str]], what: str
    ) -> _Part | None:
        found = self.resolve(naming, path, name, what)
        if found is None:
            return None
        display, real = found
        if any(real == r for _, r in chain):
            start = next(i for i, (_, r) in enumerate(chain) if r == real)
            cycle = " -> ".join([d for d, _ in chain[start:]] + [display])
            self.problems.add(naming.problem(path, f"{what} cycle: {cycle}"))
            return None
        loaded = self.load(naming, path, display, real)
        if loaded is None:
            return None
        if what == "imports":
            return self.library(loaded, [*chain, (display, real)])
        if not isinstance(loaded.data, dict):
            message = f"a spec that is extended must be a mapping, got {kind_of(loaded.data)}"
            self.problems.add(loaded.problem((), message))
            return None
        return self.compose(loaded, [*chain, (display, real)])

    def library(self, source: Source, chain: list[tuple[str, str]]) -> _Part | None:
        data = source.data
        if not isinstance(data, dict):
            self.problems.add(source.problem((), f"an imported file must be a mapping, got {kind_of(data)}"))
            return None
        for key in data:
            if key not in _LIBRARY_KEYS:
                hint = "an imported file brings in blocks only; use extends to inherit a whole spec"
                message = f"{key!r} is not allowed in an imported file (it holds netspec, blocks and imports)"
                self.problems.add(source.problem((key,), message, hint=hint))
        if "netspec" in data and data["netspec"] != 1:
            self.problems.add(source.problem(("netspec",), f"unsupported format version {data['netspec']!r}"))
        blocks = data.get("blocks", {})
        if not isinstance(blocks, dict):
            self.problems.add(source.problem(("blocks",), f"blocks must be a mapping, got {kind_of(blocks)}"))
            blocks = {}
        self.check_no_markers(source, blocks, ("blocks",), "an imported file")
        part = _Part({"blocks": dict(blocks)}, {p: loc for p, loc in source.positions.items() if p[:1] == ("blocks",)})
        if "imports" in data:
            self.add_imports(source, part, chain)
        return part

    def add_imports(self, source: Source, into: _Part, chain: list[tuple[str, str]]) -> None:
        if not isinstance(into.data, dict):
            return
        blocks = into.data.get("blocks")
        if blocks is None:
            blocks = {}
        if not isinstance(blocks, dict):
            return  # the spec's own blocks are wrong; validation reports it
        seen: set[str] = set()
        for path, name in self.entries(source, "imports"):
            lib = self.follow(source, path, name, chain, "imports")
            if lib is None or not isinstance(lib.data.get("blocks"), dict):
                continue
            lib_file = _file_of(lib.positions, ("blocks",))
            if lib_file in seen:
                continue
            seen.add(lib_file)
            for block, body in lib.data["blocks"].items():
                here = ("blocks", block)
                first = into.positions.get(here)
                second = lib.positions.get(here)
                if block in blocks:
                    if first is not None and second is not None and first.file == second.file:
                        continue  # the same library reached twice (a base imports it too)
                    message = f"block {block!r} is defined twice: in {_where(first)} and in {_where(second)}"
                    hint = "rename one of them, or import only one of the files"
                    self.problems.add(Problem(message, here, second, self.quote(second), hint))
                    continue
                blocks[block] = body
                _copy_positions(lib.positions, body, here, into.positions)
        if blocks and "blocks" not in into.data:
            into.data["blocks"] = blocks
            named_at = source.positions.get(("imports",)) or Location(source.filename, 1, 1)
            into.positions.setdefault(("blocks",), named_at)

    def quote(self, loc: Location | None) -> str | None:
        if loc is None or loc.file not in self.texts:
            return None
        lines = self.texts[loc.file].splitlines()
        return lines[loc.line - 1] if 1 <= loc.line <= len(lines) else None

    def merge_parts(self, base: _Part, over: _Part) -> _Part:
        """A later base of an ``extends`` list merged onto the earlier ones (no markers left in either)."""
        positions: dict[SpecPath, Location] = {}
        value = _merge_plain(base.data, base.positions, over.data, over.positions, (), positions)
        return _Part(value, positions)

    def merge(
        self,
        base: Any,
        base_pos: dict[SpecPath, Location],
        child: Any,
        source: Source,
        path: SpecPath,
        out: dict[SpecPath, Location],
    ) -> Any:
        """``child`` (raw, with markers) merged onto ``base``; positions of the result go to ``out``."""
        if path in source.positions:
            out[path] = source.positions[path]
        if not isinstance(child, dict) or not isinstance(base, dict):
            return self.take(child, source, path, out)
        if path not in source.positions and path in base_pos:
            out[path] = base_pos[path]  # a mapping both wrote (a dict child has no positions)
        replace = child.get(REPLACE)
        if REMOVE in child:
            self.problems.add(
                source.problem((*path, REMOVE), f"{REMOVE} goes in a mapping of its own: {{{REMOVE}: true}}")
            )
        if replace is not None and not isinstance(replace, bool):
            self.problems.add(source.problem((*path, REPLACE), f"{REPLACE} must be true or false, got {replace!r}"))
        if replace is True:
            return self.take(child, source, path, out)
        result: dict[str, Any] = {}
        for key, value in base.items():
            here = (*path, key)
            if key not in child:
                result[key] = _copy_positions(base_pos, value, here, out)
            elif _is_remove(child[key]):
                self.check_remove(source, here, child[key])
            else:
                result[key] = self.merge(value, base_pos, child[key], source, here, out)
        for key, value in child.items():
            if key in base or key == REPLACE:
                continue
            here = (*path, key)
            if _is_remove(value):
                hint = did_you_mean(key, [k for k in base if k not in child]) or None
                where = format_path(path) or "the spec"
                self.problems.add(source.problem(here, f"{REMOVE}: the base has no key {key!r} in {where}", hint=hint))
                continue
            if isinstance(value, dict) and value.get(REPLACE) is True:
                hint = did_you_mean(key, [k for k in base if k not in child]) or None
                where = format_path(path) or "the spec"
                message = f"{REPLACE}: the base has no key {key!r} in {where} to replace"
                self.problems.add(source.problem((*here, REPLACE), message, hint=hint))
            result[key] = self.take(value, source, here, out)
        return result

    def check_remove(self, source: Source, path: SpecPath, value: dict[str, Any]) -> None:
        if value.get(REMOVE) is not True:
            got = value.get(REMOVE)
            self.problems.add(source.problem((*path, REMOVE), f"{REMOVE} must be true, got {got!r}"))
        extra = [k for k in value if k != REMOVE]
        if extra:
            message = f"{{{REMOVE}: true}} removes the key; it cannot also set {', '.join(map(repr, extra))}"
            self.problems.add(source.problem((*path, extra[0]), message))

    def take(self, value: Any, source: Source, path: SpecPath, out: dict[SpecPath, Location]) -> Any:
        """A copy of the child's ``value`` (a top-level ``_replace_`` dropped); no markers allowed below it."""
        if isinstance(value, dict):
            replace = value.get(REPLACE)
            if replace is not None and not isinstance(replace, bool):
                self.problems.add(source.problem((*path, REPLACE), f"{REPLACE} must be true or false, got {replace!r}"))
            if REMOVE in value:
                self.problems.add(source.problem((*path, REMOVE), f"{REMOVE} only removes a key the base has"))
            value = {k: v for k, v in value.items() if k not in MARKERS}
            if path in source.positions:
                out[path] = source.positions[path]
            copied = {}
            for key, item in value.items():
                self.check_no_markers(source, item, (*path, key), "a replaced value")
                copied[key] = _copy_positions(source.positions, item, (*path, key), out)
            return copied
        self.check_no_markers(source, value, path, "a replaced value")
        return _copy_positions(source.positions, value, path, out)

    def check_no_markers(self, source: Source, value: Any, path: SpecPath, where: str) -> None:
        """Report ``_replace_``/``_remove_`` where they have no meaning (no base, inside lists)."""
        if not _has_markers(value):  # the common case, found without building a path for every value
            return
        todo: list[tuple[Any, SpecPath, bool]] = [(value, path, False)]
        while todo:
            item, here, in_list = todo.pop()
            if isinstance(item, dict):
                for key in MARKERS:
                    if key in item:
                        why = "inside a list (lists replace as a whole)" if in_list else f"in {where}"
                        self.problems.add(source.problem((*here, key), f"{key} has no meaning {why}"))
                todo.extend((v, (*here, k), in_list) for k, v in item.items() if k not in MARKERS)
            elif isinstance(item, list):
                todo.extend((v, (*here, i), True) for i, v in enumerate(item))


def _has_markers(value: Any) -> bool:
    """Whether a mapping anywhere in ``value`` has a ``_replace_`` or ``_remove_`` key."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            if REPLACE in item or REMOVE in item:
                return True
            todo.extend(v for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            todo.extend(v for v in item if isinstance(v, (dict, list)))
    return False


def _is_remove(value: Any) -> bool:
    return isinstance(value, dict) and REMOVE in value


def _merge_plain(
    base: Any,
    base_pos: dict[SpecPath, Location],
    over: Any,
    over_pos: dict[SpecPath, Location],
    path: SpecPath,
    out: dict[SpecPath, Location],
) -> Any:
    loc = over_pos.get(path) or base_pos.get(path)
    if loc is not None:
        out[path] = loc
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return _copy_positions(over_pos, over, path, out)
    result: dict[str, Any] = {}
    for key, value in base.items():
        here = (*path, key)
        result[key] = (
            _merge_plain(value, base_pos, over[key], over_pos, here, out)
            if key in over
            else _copy_positions(base_pos, value, here, out)
        )
    for key, value in over.items():
        if key not in base:
            result[key] = _copy_positions(over_pos, value, (*path, key), out)
    return result


def _copy_positions(
    positions: dict[SpecPath, Location], value: Any, path: SpecPath, out: dict[SpecPath, Location]
) -> Any:
    """A deep copy of ``value``; the positions of it and everything under it copied from ``positions``."""
    loc = positions.get(path)
    if loc is not None:
        out[path] = loc
    if isinstance(value, dict):
        return {k: _copy_positions(positions, v, (*path, k), out) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_positions(positions, v, (*path, i), out) for i, v in enumerate(value)]
    return value


def _file_of(positions: dict[SpecPath, Location], path: SpecPath) -> str:
    loc = positions.get(path)
    if loc is None:
        loc = next((v for k, v in positions.items() if k[: len(path)] == path), None)
    return loc.file if loc is not None else ""


def _where(loc: Location | None) -> str:
    return f"{loc.file}:{loc.line}" if loc is not None else "an unknown place"


def _renamed(problem: Problem, real: str, display: str) -> Problem:
    loc = problem.location
    message = problem.message.replace(real, display)
    if loc is not None and loc.file == real:
        loc = Location(display, loc.line, loc.column)
    return Problem(message, problem.path, loc, problem.source_line, problem.hint, problem.severity)


def _rename(source: Source, real: str, display: str) -> Source:
    """The same source under its display name (relative to the top-level spec, as the user wrote it)."""
    positions = {p: Location(display, loc.line, loc.column) for p, loc in source.positions.items()}
    return Source(source.data, display, source.text, positions)


def _rebase_init_paths(part: _Part, top: str) -> None:
    """A relative ``init: from:`` is relative to the file that wrote it; the merged spec stands where the
    top-level spec does, so a path written in a base file in another folder is rewritten relative to it."""
    init = part.data.get("init") if isinstance(part.data, dict) else None
    for i, rule in enumerate(init if isinstance(init, list) else []):
        value = rule.get("from") if isinstance(rule, dict) else None
        loc = part.positions.get(("init", i, "from"))
        if not isinstance(value, str) or "${" in value or os.path.isabs(value) or loc is None or loc.file == top:
            continue
        written = os.path.normpath(os.path.join(os.path.dirname(loc.file), value))
        rule["from"] = os.path.relpath(written, os.path.dirname(top) or os.curdir)


def compose(source: Source, search_path: Sequence[str | os.PathLike[str]] | None = None) -> Source:
    """``source`` with every ``extends`` and ``imports`` merged in (see the module docstring)."""
    data = source.data
    folders = [os.fspath(p) for p in search_path] if search_path is not None else default_search_path(source)
    missing = [
        Problem(f"search path entry {folder} is not a folder") for folder in folders if not os.path.isdir(folder)
    ]
    if missing:
        raise SpecError(missing)
    if not isinstance(data, dict) or not any(k in data for k in COMPOSE_KEYS):
        composer = _Composer(SearchPath.of(folders))
        composer.check_no_markers(source, data, (), "a spec that extends no other")
        composer.problems.extend(composer.search.check_init_paths(source))
        composer.problems.raise_if_errors()
        return source
    composer = _Composer(SearchPath.of(folders))
    if source.text is not None:
        composer.texts[source.filename] = source.text
    top = os.path.realpath(source.filename) if source.text is not None else "<dict>"
    part = composer.compose(source, [(source.filename, top)])
    composer.problems.raise_if_errors()
    _rebase_init_paths(part, source.filename)
    texts = {name: text for name, text in composer.texts.items() if name != source.filename}
    merged = Source(part.data, source.filename, source.text, part.positions, texts)
    problems = composer.search.check_init_paths(merged)
    if problems:
        raise SpecError(problems)
    return merged


def refuse_composition(data: Any, where: str) -> list[Problem]:
    """Problems for ``extends``/``imports`` in a spec that must stand alone (one embedded in a checkpoint)."""
    if not isinstance(data, dict):
        return []
    return [
        Problem(
            f"{key!r} is not allowed in {where}: an embedded spec is self-contained and reads no other file", (key,)
        )
        for key in COMPOSE_KEYS
        if key in data
    ]


__all__ = ["COMPOSE_KEYS", "MARKERS", "compose", "refuse_composition"]
