"""Which forward arguments of a traced module become Graph inputs, and the generated forward that binds them.

In: a module, its path (for messages), its forward's signature, and what its caller passes — the inputs
``emit(inputs=...)`` names for the root; for a child, the defaulted arguments its parent gives computed
values and the computed values it passes into ``**kwargs`` (``passed``). Out: the arguments fixed to their
defaults (name -> value), the Graph's input names in order (forward's own, then those ``**kwargs`` takes),
and warnings saying what was fixed (``bindings``); ``bound_forward``, the ``forward(self, <inputs>)`` that
fx traces in place of the real one when the inputs differ from forward's own arguments (``**kwargs``,
``inputs=``, a list argument as one input per element). What a Graph cannot take is an ``EmitError`` naming
the module path, its class and why. ``calls_by_name``: a child's recorded example calls by argument name.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch.nn as nn

from ..errors import EmitError
from .layers import where
from .lint import ModelWarning
from .lists import Flattened
from .spelling import fixed_inputs


def bound_forward(
    forward: Callable[..., Any], names: Sequence[str], fixed: Mapping[str, Any], lists: Flattened | None = None
) -> Callable[..., Any]:
    """``forward(self, <names>)`` calling the real forward with those arguments and ``fixed`` by keyword:
    what fx traces when a forward takes ``**kwargs`` (Hugging Face's, behind a decorator), when
    ``emit(inputs=...)`` chose the Graph's inputs, or when a list argument is one input per element
    (``forward(self, x_0, x_1)`` calling ``forward(self, x=[x_0, x_1])``). fx reads argument names from the
    code object, so the function is generated; ``names`` are parameter names read from the signature."""
    if not all(n.isidentifier() for n in [*names, *(lists.flat if lists else ())]):  # unreachable
        raise EmitError(f"forward parameter names {list(names)} are not identifiers")
    namespace: dict[str, Any] = {"_forward": forward, "_fixed": dict(fixed)}
    params = "".join(f", {n}" for n in names)
    call = "".join(f"{n}={n}, " for n in names)
    if lists is not None:
        params, call = lists.source()
    exec(f"def forward(self{params}):\n    return _forward(self, {call}**_fixed)\n", namespace)
    return namespace["forward"]


def bindings(
    module: nn.Module,
    path: str,
    signature: inspect.Signature,
    inputs: Sequence[str] | None,
    passed: Sequence[str] = (),
) -> tuple[dict[str, Any], list[str] | None, list[ModelWarning]]:
    """Which forward arguments are fixed (name -> value) and, when a generated forward is traced
    (``**kwargs``, or ``inputs`` given), the Graph's input names in order (else None). ``passed``: defaulted
    arguments the parent passes values computed in its forward, which stay inputs."""
    params = list(signature.parameters.values())
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    var_kw = [p for p in params if p.kind is p.VAR_KEYWORD]
    var_pos = [p for p in params if p.kind is p.VAR_POSITIONAL]
    notes: list[ModelWarning] = []
    if var_pos or (var_kw and not named):
        p = (var_pos or var_kw)[0]
        stars = "**" if p.kind is p.VAR_KEYWORD else "*"
        raise EmitError(
            f"{where(path, module)}: forward takes {stars}{p.name}; a Graph needs named inputs "
            f"(write forward(self, x, y) instead of forward(self, {stars}{p.name}))"
        )
    if inputs is None:
        fixed = {name: default for name, (_, default) in fixed_inputs(module).items() if name not in passed}
        for name, default in fixed.items():
            notes.append(
                ModelWarning(
                    path,
                    f"{type(module).__name__}.forward argument {name!r} is fixed to its default {default!r}: "
                    "Graph inputs have no defaults",
                    "pass the value through a layer argument if it must vary",
                )
            )
        free = [p.name for p in named if p.name not in fixed]
        if params and not free:
            shown = ", ".join(f"{k}={v!r}" for k, v in fixed.items())
            hint = (
                "emit(model, inputs=[...]) names the forward arguments the spec takes"
                if not path
                else "give the tensor inputs no default (forward(self, x, mask=None)), or wrap the module in one "
                "whose forward takes the tensors"
            )
            raise EmitError(
                f"{where(path, module)}: every forward input has a default ({shown}); fixing them to their "
                "defaults would leave a Graph with no inputs, which builds but does not compute the model"
                f"\n    hint: {hint}"
            )
        if not var_kw:
            return fixed, None, notes
        if any(p.kind is p.POSITIONAL_ONLY for p in named):
            raise EmitError(f"{where(path, module)}: forward takes positional-only arguments and **kwargs")
        beyond = [n for n in passed if n not in {p.name for p in named}]  # computed values only **kwargs takes
        taken = f" with {', '.join(beyond)} (the values its caller passes)" if beyond else " empty"
        notes.append(ModelWarning(path, f"{type(module).__name__}.forward's **{var_kw[0].name} is traced{taken}"))
        return fixed, free + beyond, notes
    names = {p.name for p in named}
    unknown = [n for n in inputs if n not in names]
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(names), n=1)
        raise EmitError(
            f"{where(path, module)}: inputs= names {unknown[0]!r}, which is not an argument of "
            f"{type(module).__name__}.forward"
            + (f"; did you mean {close[0]!r}?" if close else "")
            + f"\n    hint: its arguments are {', '.join(p.name for p in named)}"
        )
    missing = [p.name for p in named if p.name not in inputs and p.default is p.empty]
    if missing:
        raise EmitError(
            f"{where(path, module)}: forward's argument {missing[0]!r} has no default, so inputs= must name it"
        )
    if any(p.kind is p.POSITIONAL_ONLY for p in named):
        raise EmitError(f"{where(path, module)}: inputs= cannot bind forward's positional-only arguments")
    fixed = {p.name: p.default for p in named if p.name not in inputs}
    if fixed:
        notes.append(
            ModelWarning(
                path,
                f"{type(module).__name__}.forward is emitted with the inputs {', '.join(inputs)}; "
                f"{', '.join(fixed)} are fixed to their defaults" + (" and **kwargs empty" if var_kw else ""),
            )
        )
    return fixed, [p.name for p in named if p.name in inputs], notes


def calls_by_name(module: nn.Module, calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[dict[str, Any]]:
    """A child's recorded example calls as argument name -> example (by its forward's signature; what its
    ``**kwargs`` took by each keyword's own name, as the generated forward takes it)."""
    try:
        signature = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return []
    var_kw = next((p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD), None)
    out = []
    for args, kwargs in calls:
        try:
            bound = dict(signature.bind_partial(*args, **kwargs).arguments)
        except TypeError:
            return []
        taken = bound.pop(var_kw, {}) if var_kw is not None else {}
        out.append({**bound, **taken})
    return out


__all__ = ["bindings", "bound_forward", "calls_by_name"]
