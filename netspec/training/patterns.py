"""The one place where spec patterns meet module and parameter names.

In: a pattern from ``init.match``, ``freeze``, ``optimizer.groups.params`` or ``no_decay``
and the dotted names of a model. Out: the names it selects, or the closest real names when
it selects none; and the other way round, ``compress_names``: the fewest patterns covering a
set of names (for summaries, load reports and emitted specs).

Semantics (contract section 3):

* A pattern is matched against *whole* dotted names, never against substrings:
  ``head.*`` selects ``head.fc.weight`` but never ``decode_head.weight``.
* A pattern with glob characters (``* ? [``) uses ``fnmatch`` semantics, where ``*`` also
  spans dots: ``features.*.bias`` selects ``features.0.bias`` and ``features.a.b.bias``.
* A name is selected when the pattern matches the name itself *or one of its dotted
  prefixes* (the modules that contain it). So a bare module path selects that module and its
  descendants: ``features.conv1`` selects ``features.conv1.weight`` but not
  ``features.conv10.weight``; a glob on module names (``features.[01]``) works the same.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from fnmatch import fnmatchcase

from torch import nn

GLOB_CHARS = "*?["


def is_glob(pattern: str) -> bool:
    """Whether ``pattern`` uses glob syntax (else it is a literal dotted path)."""
    return any(ch in pattern for ch in GLOB_CHARS)


def _match_whole(pattern: str, name: str) -> bool:
    if is_glob(pattern):
        return fnmatchcase(name, pattern)
    return name == pattern


def dotted_prefixes(name: str) -> list[str]:
    """``"a.b.c"`` -> ``["a", "a.b", "a.b.c"]``."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def selects(pattern: str, name: str) -> bool:
    """Whether ``pattern`` selects ``name`` (the name itself or a module containing it)."""
    return any(_match_whole(pattern, prefix) for prefix in dotted_prefixes(name))


def select(pattern: str, names: Iterable[str]) -> list[str]:
    """The names ``pattern`` selects, in their given order."""
    return [name for name in names if selects(pattern, name)]


def model_names(model: nn.Module) -> list[str]:
    """Every module, parameter and buffer name of ``model`` (the pool for suggestions)."""
    names = [name for name, _ in model.named_modules() if name]
    names += [name for name, _ in model.named_parameters()]
    names += [name for name, _ in model.named_buffers()]
    return list(dict.fromkeys(names))


def _core(pattern: str) -> str:
    """The literal part of a pattern: ``"featurs.*"`` -> ``"featurs"``."""
    cut = min((pattern.index(ch) for ch in GLOB_CHARS if ch in pattern), default=len(pattern))
    return pattern[:cut].strip(".")


def closest(pattern: str, names: Iterable[str], n: int = 3) -> list[str]:
    """The ``n`` real names most similar to ``pattern`` (always some, if there are names)."""
    pool = list(dict.fromkeys(names))
    core = _core(pattern)

    def score(name: str) -> float:
        best = difflib.SequenceMatcher(None, pattern, name).ratio()
        if core:
            best = max(best, difflib.SequenceMatcher(None, core, name).ratio())
            for prefix in dotted_prefixes(name):
                best = max(best, difflib.SequenceMatcher(None, core, prefix).ratio())
        return best

    ranked = sorted(pool, key=lambda name: (-score(name), len(name), name))
    return ranked[:n]


def no_match(pattern: str, names: Iterable[str], what: str = "parameter or module") -> tuple[str, str]:
    """``(message, hint)`` for a pattern that selects nothing, naming the closest names."""
    pool = list(dict.fromkeys(names))
    if not pool:
        return f"pattern {pattern!r} selects nothing: the model has no {what}s", "remove this entry"
    near = closest(pattern, pool)
    message = f"pattern {pattern!r} matches no {what} name; closest names: " + ", ".join(map(repr, near))
    core = _core(pattern)
    inside = [name for name in pool if core and core in name] if core else []
    if inside:
        hint = (
            f"patterns match whole dotted names, never substrings ({inside[0]!r} contains {core!r}); "
            f"write '*{pattern}' or '*{core}*' to match inside names"
        )
    elif is_glob(pattern):
        prefixes = {prefix for name in pool for prefix in dotted_prefixes(name)}
        close = difflib.get_close_matches(core, sorted(prefixes), n=1, cutoff=0.6) if core else []
        if close:
            hint = f"did you mean {pattern.replace(core, close[0], 1)!r}?"
        else:
            hint = "'*' spans dots; a bare module path (no glob characters) selects that module's parameters"
    else:
        hint = f"did you mean {near[0]!r}?"
    return message, hint


def compress_names(members: Iterable[str], universe: Iterable[str]) -> list[str]:
    """The fewest module prefixes (then ``*.leaf`` globs) that cover ``members`` exactly.

    ``universe`` is every parameter name; a prefix is used only when everything under it is a
    member. ``["*"]`` when ``members`` is everything.
    """
    chosen = set(members)
    names = list(universe)
    if not chosen:
        return []
    if set(names) <= chosen:
        return ["*"]
    out: list[str] = []

    def walk(prefix: str, under: list[str]) -> None:
        inside = [n for n in under if n in chosen]
        if not inside:
            return
        if len(inside) == len(under):
            out.append(prefix)
            return
        children: dict[str, list[str]] = {}
        for name in under:
            rest = name[len(prefix) + 1 :] if prefix else name
            child = (prefix + "." if prefix else "") + rest.split(".")[0]
            children.setdefault(child, []).append(name)
        for child, sub in children.items():
            walk(child, sub)

    walk("", names)
    return _collapse_leaves(out, chosen, names)


def _collapse_leaves(entries: list[str], chosen: set[str], names: list[str]) -> list[str]:
    """Replace three or more ``x.y.bias`` entries by a ``*.bias``-style glob when that is exact."""
    leaves: dict[str, list[str]] = {}
    for entry in entries:
        if entry in chosen and "." in entry:
            leaves.setdefault(entry.rsplit(".", 1)[1], []).append(entry)
    result = list(entries)
    for leaf, group in leaves.items():
        if len(group) < 3:
            continue
        candidates = [f"*.{leaf}", *sorted({f"{g.split('.', 1)[0]}.*.{leaf}" for g in group})]
        for glob in candidates:
            hits = set(select(glob, names))
            if hits <= chosen and set(group) & hits:
                covered = [e for e in result if e in hits]
                if len(covered) >= 2:
                    first = result.index(covered[0])
                    result = [e for e in result if e not in hits]
                    result.insert(min(first, len(result)), glob)
    return result


def join_name(prefix: str, name: str) -> str:
    """A dotted module path: ``join_name("features", "0") == "features.0"``; the root's prefix is ``""``."""
    return f"{prefix}.{name}" if prefix else name
