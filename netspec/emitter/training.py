"""The training set-up of an existing model -> ``freeze:`` and ``optimizer:`` sections.

In: a model (its parameters' ``requires_grad``) and optionally a ``torch.optim`` optimizer.
Out: ``freeze`` entries (module paths where a whole module is frozen, else parameter names or
``*.bias``-style globs) and an ``optimizer`` section: ``type``, the constructor arguments that
differ from torch's defaults, and ``groups`` whose ``params`` patterns rebuild the same torch
param groups — same members, same hyperparameters, same order (the last group becomes the spec's
default group when its settings are the optimizer's). Both are checked by selecting with the
spec's own pattern rules (and, for the optimizer, by building it) before they are returned.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn as nn

from ..errors import EmitError, ProblemList
from ..frontend.training_models import OptimizerSpec
from ..training.explain import compress_names
from ..training.optim import optimizer_classes, run_optimizer
from ..training.patterns import select
from .layers import plain, same_value
from .lint import ModelWarning

_NEVER = frozenset({"params"})


def _number(value: Any) -> Any:
    """An optimizer setting as the spec writes it (``layers.plain``, a 1-element tensor as its number)."""
    return plain(value, unwrap_scalars=True)


def all_parameter_names(model: nn.Module) -> list[str]:
    """Every parameter name, a tied tensor under its first name only (emit writes ``tie:`` for the others,
    so the rebuilt model lists it the same way)."""
    return [name for name, _ in model.named_parameters()]


def patterns_for(members: Iterable[str], universe: list[str]) -> list[str]:
    """The fewest patterns that select exactly ``members`` out of ``universe`` (checked, else the names)."""
    chosen = list(dict.fromkeys(members))
    patterns = compress_names(chosen, universe)
    selected = {n for p in patterns for n in select(p, universe)}
    return patterns if selected == set(chosen) else chosen


def freeze_section(model: nn.Module) -> list[str]:
    """``freeze:`` entries for every parameter with ``requires_grad=False`` (empty when none)."""
    named = list(model.named_parameters())  # a tied tensor once, under its first name, as the rebuilt model
    frozen = [n for n, p in named if not p.requires_grad]
    return patterns_for(frozen, [n for n, _ in named]) if frozen else []


def _written(value: Any, key: str, where: str) -> Any:
    value = _number(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise EmitError(f"{where}: {key}={value} cannot be written in a spec")
    if key in ("lr", "weight_decay") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def optimizer_section(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], list[ModelWarning]]:
    """The ``optimizer:`` section rebuilding ``optimizer`` for ``model``, and what it could not express."""
    cls = type(optimizer)
    name = cls.__name__
    if optimizer_classes().get(name) is not cls:
        raise EmitError(
            f"optimizer {cls.__module__}.{name} is not a torch.optim optimizer, so a spec cannot name it; "
            "emit without optimizer= and add the section by hand"
        )
    where = f"optimizer {name}"
    signature = {
        p.name: p.default
        for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
        if p.name not in _NEVER and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    defaults = {k: v for k, v in optimizer.defaults.items() if k in signature}
    section: dict[str, Any] = {"type": name}
    for key, value in defaults.items():
        default = signature[key]
        if default is inspect.Parameter.empty or not same_value(_number(value), _number(default)):
            section[key] = _written(value, key, where)

    named = list(model.named_parameters())  # a tied tensor once, under its first name, as the rebuilt model
    names_of: dict[int, list[str]] = {}
    for n, p in named:
        names_of.setdefault(id(p), []).append(n)
    universe = [n for n, _ in named]
    frozen = {n for n, p in named if not p.requires_grad}
    notes: list[ModelWarning] = []
    groups: list[list[str]] = []
    for i, group in enumerate(optimizer.param_groups):
        members: list[str] = []
        for p in group["params"]:
            if id(p) not in names_of:
                raise EmitError(
                    f"{where}: param group {i} holds a tensor of shape {list(p.shape)} that is not a "
                    "parameter of the model; emit the model the optimizer was made for"
                )
            members += names_of[id(p)]
        groups.append(members)
    in_groups = {n for g in groups for n in g}
    stray = [n for n in universe if n not in in_groups and n not in frozen]
    if stray:
        notes.append(
            ModelWarning(
                "optimizer",
                f"{len(stray)} trainable parameter(s) are in no param group "
                f"(e.g. {stray[0]!r}); the spec's optimizer trains every trainable parameter",
                "freeze them (requires_grad_(False)) before emitting",
            )
        )
    frozen_in = [n for n in in_groups if n in frozen]
    if frozen_in:
        notes.append(
            ModelWarning(
                "optimizer",
                f"{len(frozen_in)} frozen parameter(s) are in param groups "
                f"(e.g. {frozen_in[0]!r}); a spec leaves frozen parameters out of the optimizer",
            )
        )

    entries: list[dict[str, Any]] = []
    claimed: set[str] = set()
    last = len(optimizer.param_groups) - 1
    for i, (group, members) in enumerate(zip(optimizer.param_groups, groups, strict=True)):
        live = [n for n in members if n not in frozen]
        if not live:
            continue
        options = {
            k: _written(v, k, where)
            for k, v in group.items()
            if k in defaults and not same_value(_number(v), _number(defaults[k]))
        }
        if i == last and not options and not stray:
            break  # the remaining parameters form the spec's default group, with the optimizer's settings
        pool = [n for n in universe if n not in claimed and n not in frozen]
        entries.append({"params": patterns_for(live, pool), **options})
        claimed.update(live)
    if entries:
        section["groups"] = entries
    if not stray and not frozen_in:
        _check(model, optimizer, section, frozen)
    return section, notes


def _check(model: nn.Module, optimizer: torch.optim.Optimizer, section: Mapping[str, Any], frozen: set[str]) -> None:
    """Build the section's optimizer for ``model`` and compare its groups with the original's."""
    problems = ProblemList()
    spec = OptimizerSpec.model_validate(dict(section))
    rebuilt, _, _, _ = run_optimizer(model, spec, frozen, None, problems)
    if problems.errors or rebuilt is None:
        detail = "; ".join(p.message for p in problems.errors) or "no optimizer was built"
        raise EmitError(f"the emitted optimizer section {dict(section)} does not rebuild: {detail}")
    original = [g for g in optimizer.param_groups if any(p.requires_grad for p in g["params"])]
    if len(rebuilt.param_groups) != len(original):
        raise EmitError(
            f"the emitted optimizer section makes {len(rebuilt.param_groups)} param group(s), the optimizer has "
            f"{len(original)}; its groups cannot be expressed with spec patterns"
        )
    for i, (mine, theirs) in enumerate(zip(rebuilt.param_groups, original, strict=True)):
        want = {id(p) for p in theirs["params"] if p.requires_grad}
        if {id(p) for p in mine["params"]} != want:
            raise EmitError(f"the emitted optimizer group {i} selects other parameters than the original group")
        for key, value in theirs.items():
            if key != "params" and key in mine and not same_value(_number(mine[key]), _number(value)):
                raise EmitError(f"the emitted optimizer group {i} has {key}={mine[key]!r}, the original {value!r}")


__all__ = ["all_parameter_names", "freeze_section", "optimizer_section", "patterns_for"]
