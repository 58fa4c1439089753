"""Shared helpers: located problems and keyword arguments checked against torch signatures.

In: a callable (an ``nn.init`` function, an optimizer or scheduler class), the keyword
arguments a spec gives it and the spec path they came from. Out: the arguments converted
to what torch expects (lists -> tuples where torch takes tuples, ints -> floats where torch
takes floats, ``"inf"`` -> ``float("inf")``), or ``Problem``s saying which argument is
unknown (with did-you-mean), missing, or of the wrong type, and what was expected.
"""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import torch

from ..catalog.argtypes import describe_value as describe
from ..errors import Problem, ProblemList, SpecPath, did_you_mean, format_path


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


def name_list(names: Iterable[str], limit: int = 12) -> str:
    """``a, b, c`` (at most ``limit`` names, then ``… (N more)``)."""
    items = list(names)
    shown = ", ".join(items[:limit])
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


ParamInfo = tuple[inspect.Parameter, Any]  # the parameter and its annotation (None: not checked)


class _Mismatch(Exception):
    """A value does not fit an annotation; the message is what was expected."""


_NAMESPACE: dict[str, Any] = {**vars(typing), **vars(collections.abc), "torch": torch, "Tensor": torch.Tensor}


def _annotation(param: inspect.Parameter, func: Any) -> Any:
    """The parameter's annotation as an object, ``None`` when unknown (then nothing is checked)."""
    ann = param.annotation
    if ann is inspect.Parameter.empty:
        return _from_default(param.default)
    if isinstance(ann, str):
        target = getattr(func, "__init__", func) if inspect.isclass(func) else func
        env = {**_NAMESPACE, **getattr(target, "__globals__", {})}
        try:
            return eval(ann, env)  # torch's own annotation strings, never spec text
        except (NameError, SyntaxError, TypeError, AttributeError):
            return _from_default(param.default)
    return ann


def _from_default(default: Any) -> Any:
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return float if isinstance(default, float) else int
    if isinstance(default, str):
        return str
    return None


def _expected(ann: Any) -> str:
    """Human wording of an annotation."""
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if ann is None or ann is type(None):
        return "null"
    if ann is float:
        return "number"
    if ann in (int, bool, str):
        return ann.__name__
    if ann is torch.Tensor:
        return "number"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts: list[str] = []
        for a in args:
            text = _expected(a)
            if text not in parts:
                parts.append(text)
        return " or ".join(parts)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_expected(args[0])}"
        return "[" + ", ".join(_expected(a) for a in args) + "]"
    if origin in (list, collections.abc.Sequence, collections.abc.Iterable):
        return f"list of {_expected(args[0])}" if args else "list"
    return getattr(ann, "__name__", str(ann))


def convert(value: Any, ann: Any) -> Any:
    """``value`` converted for ``ann``; raises ``_Mismatch`` when it does not fit."""
    if ann is None or ann is typing.Any:
        return value
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if ann is type(None):
        if value is None:
            return None
        raise _Mismatch("null")
    if ann in (float, torch.Tensor):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch("a number")
    if ann is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch("an int")
    if ann is bool or ann is str:
        if isinstance(value, ann):
            return value
        raise _Mismatch("a " + ann.__name__)
    if origin is typing.Literal:
        if value in args and any(type(value) is type(a) for a in args):
            return value
        raise _Mismatch(_expected(ann))
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return convert(value, option)
            except _Mismatch:
                continue
        raise _Mismatch(_expected(ann))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch(_expected(ann))
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert(v, args[0]) for v in value)
        if args and len(args) != len(value):
            raise _Mismatch(_expected(ann))
        return tuple(convert(v, a) for v, a in zip(value, args, strict=False)) if args else tuple(value)
    if origin in (list, collections.abc.Sequence, collections.abc.Iterable):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch(_expected(ann))
        return [convert(v, args[0]) for v in value] if args else list(value)
    if origin is collections.abc.Callable or ann is collections.abc.Callable or inspect.isclass(ann):
        raise _Mismatch(f"a Python {_expected(ann)} object, which a spec cannot express")
    return value


def signature_params(target: Callable[..., Any], skip: Iterable[str]) -> dict[str, ParamInfo]:
    """Keyword-settable parameters of ``target`` (a function or a class) minus ``skip``."""
    func = target.__init__ if inspect.isclass(target) else target
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return {}
    skipped = set(skip) | {"self"}
    out: dict[str, ParamInfo] = {}
    for name, param in sig.parameters.items():
        if name in skipped or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.kind is param.POSITIONAL_ONLY:
            continue
        out[name] = (param, _annotation(param, target))
    return out


def check_kwargs(
    target: Callable[..., Any],
    given: Mapping[str, Any],
    *,
    what: str,
    path: SpecPath,
    source: Any,
    problems: ProblemList,
    skip: Iterable[str] = (),
    require: bool = True,
) -> dict[str, Any] | None:
    """Validate ``given`` against ``target``'s signature; ``None`` when anything was wrong.

    ``what`` names the callable in messages (``"init function 'normal'"``); each problem is
    located at ``path + (argument,)``, or at ``path`` for a missing argument.
    """
    params = signature_params(target, skip)
    out: dict[str, Any] = {}
    ok = True
    suggested: set[str] = set()  # a misspelt required argument is reported once, not also as missing
    for key, value in given.items():
        if key not in params:
            takes = name_list(params) or "no arguments"
            hint = did_you_mean(str(key), params) or f"{what} takes: {takes}"
            suggested.update(difflib.get_close_matches(str(key), list(params), n=1, cutoff=0.6))
            problems.add(make_problem(source, (*path, key), f"{what} has no argument {key!r}", hint))
            ok = False
            continue
        ann = params[key][1]
        try:
            out[key] = convert(value, ann)
        except _Mismatch as err:
            message = f"argument {key!r} of {what} must be {err}, got {describe(value)}"
            problems.add(make_problem(source, (*path, key), message))
            ok = False
    if require:
        for name, (param, _) in params.items():
            if param.default is inspect.Parameter.empty and name not in given and name not in suggested:
                message = f"{what} needs argument {name!r}, which is missing"
                problems.add(make_problem(source, path, message, f"add {name}: <value> beside it"))
                ok = False
    return out if ok else None
