"""Shared helpers: located problems, and keyword arguments checked against torch signatures.

In: a callable (an ``nn.init`` function, an optimizer or scheduler class), the keyword
arguments a spec gives it and the spec path they came from. Out: the arguments converted
to what torch expects, or ``Problem``s located at the argument saying which one is unknown
(with did-you-mean), missing, or of the wrong type, and what was expected. The checking is
``catalog.argtypes`` — the same types, conversions and wording as for layer and loss
arguments; this module only turns its findings into located ``Problem``s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from ..catalog.argtypes import check_arguments, name_list, signature_params
from ..catalog.argtypes import describe_value as describe
from ..errors import Problem, ProblemList, SpecPath, did_you_mean, format_path

T = TypeVar("T")


class SourceLike(Protocol):
    """What this subpackage needs from ``netspec.source.Source``."""

    def problem(
        self,
        path: SpecPath,
        message: str,
        *,
        hint: str | None = None,
        warning: bool = False,
    ) -> Problem: ...


def make_problem(
    source: Any, path: SpecPath, message: str, hint: str | None = None, *, warning: bool = False
) -> Problem:
    """A ``Problem`` located through ``source`` when there is one, else an unlocated one."""
    if source is not None and hasattr(source, "problem"):
        return source.problem(tuple(path), message, hint=hint, warning=warning)
    return Problem(message, path=tuple(path), hint=hint, severity="warning" if warning else "error")


def rule_location(source: Any, path: SpecPath) -> str:
    """``file:line`` of a spec entry (for explain and init sources), or its dotted path."""
    locate = getattr(source, "locate", None)
    loc = locate(tuple(path)) if callable(locate) else None
    if loc is not None:
        return f"{loc.file}:{loc.line}"
    return format_path(path)


def look_up(
    table: Mapping[str, T], name: str, what: str, expected: str, path: SpecPath, source: Any, problems: ProblemList
) -> T | None:
    """``table[name]`` (an optimizer class, a scheduler class, an init function); ``None`` after adding
    ``unknown <what> 'name'; expected <expected>`` with did-you-mean, or the names available."""
    if name in table:
        return table[name]
    hint = did_you_mean(name, table) or f"available: {name_list(table, 20)}"
    problems.add(make_problem(source, path, f"unknown {what} {name!r}; expected {expected}", hint))
    return None


def check_kwargs(
    target: Callable[..., Any],
    given: Mapping[str, Any],
    *,
    owner: str,
    what: str,
    path: SpecPath,
    source: Any,
    problems: ProblemList,
    skip: Iterable[str] = (),
    require: bool = True,
) -> dict[str, Any] | None:
    """Validate ``given`` against ``target``'s signature; ``None`` when anything was wrong.

    ``owner`` prefixes type errors (``SGD.lr: expected number, got str 'x'``, worded as for a
    layer's ``Conv2d.stride``), ``what`` names the callable in the others (``"init function
    'normal'"``); each problem is located at ``path + (argument,)``, or at ``path`` for a
    missing argument.
    """
    params = signature_params(target, skip)
    out, found = check_arguments(params, given, owner=owner, what=what, require=require)
    for arg, message, hint in found:
        problems.add(make_problem(source, path if arg is None else (*path, arg), message, hint))
    return None if found else out


__all__ = ["check_kwargs", "describe", "look_up", "make_problem", "name_list", "rule_location", "signature_params"]
