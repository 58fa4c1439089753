"""``init:`` rules: initialise parameters and buffers with ``torch.nn.init`` or a checkpoint.

In: a constructed model, the ``InitRule`` list, the ``Source`` (for locations) and the
spec's directory (for ``from:`` paths). Out: the model initialised in place, and a map from
each tensor name that a rule set to the ``file:line`` of the last rule that set it; or a
``SpecError`` listing every problem (unknown function, bad argument, a rule selecting
nothing, a function that cannot handle a tensor, an unreadable checkpoint …).

Rules apply in order, so a later rule overrides an earlier one. Randomness comes from
torch's global RNG, so the caller seeds it (same seed -> bit-identical tensors; float64 and
bfloat16 tensors are drawn in float32 and cast, so they match a float32 build up to rounding).
On the meta model validation uses, every function runs its argument checks without filling.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..compiler.fill import fill
from ..errors import ProblemList, SpecPath, did_you_mean, first_line
from ..frontend.training_models import InitRule
from .kwargs import check_kwargs, describe, look_up, make_problem, name_list, rule_location
from .load import LoadReport, load_rule
from .patterns import join_name, model_names, no_match, select, selects
from .sharded import fill_full

EXPECTED = "a torch.nn.init function name without the '_'"  # what an unknown fn is told


@cache
def init_functions() -> dict[str, Callable[..., Any]]:
    """Every public in-place ``torch.nn.init`` function, by its name without the ``_``."""
    found: dict[str, Callable[..., Any]] = {}
    for attr in sorted(dir(nn.init)):
        func = getattr(nn.init, attr)
        if attr.endswith("_") and not attr.startswith("_") and inspect.isfunction(func):
            found[attr[:-1]] = func
    return found


def init_arguments(func: Callable[..., Any]) -> set[str]:
    """Arguments a spec may not give: the tensor itself and the RNG ``generator``."""
    first = next(iter(inspect.signature(func).parameters), "tensor")
    return {first, "generator"}


@cache
def torch_layer_names() -> frozenset[str]:
    """Class names of every ``torch.nn`` module class (known ``type:`` names)."""
    found = {name: getattr(nn, name) for name in dir(nn)}
    return frozenset(n for n, obj in found.items() if inspect.isclass(obj) and issubclass(obj, nn.Module))


def type_names(module: nn.Module) -> set[str]:
    """Names a ``type:`` selector matches for ``module``: every class in its MRO."""
    return {cls.__name__ for cls in type(module).__mro__}


def check_types(
    types: list[str],
    model: nn.Module,
    path: SpecPath,
    source: Any,
    problems: ProblemList,
) -> bool:
    """Each name must be a torch.nn class or a class found in the model (else a typo)."""
    present: set[str] = set()
    for module in model.modules():
        present |= type_names(module)
    known = present | torch_layer_names()
    ok = True
    for i, name in enumerate(types):
        if name not in known:
            where = (*path, i) if len(types) > 1 else path
            in_model = sorted(n for n in present if n not in ("Module", "object"))
            hint = did_you_mean(name, known) or f"layer types in this model: {name_list(in_model)}"
            problems.add(make_problem(source, where, f"unknown layer type {name!r}", hint))
            ok = False
    return ok


def as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


@dataclass
class InitCall:
    """A resolved init function with its converted arguments."""

    name: str
    func: Callable[..., Any]
    kwargs: dict[str, Any]
    path: SpecPath


@dataclass
class InitPlan:
    """One statically checked rule."""

    index: int
    kind: Literal["keys", "fn", "from"]
    types: list[str]
    match: list[str] | None  # globs; a name is selected when any of them selects it
    calls: dict[str, InitCall]


def _resolve_fn(
    name: str,
    kwargs: dict[str, Any],
    fn_path: SpecPath,
    args_path: SpecPath,
    source: Any,
    problems: ProblemList,
) -> InitCall | None:
    func = look_up(init_functions(), name, "init function", EXPECTED, fn_path, source, problems)
    if func is None:
        return None
    what, skip = f"init function {name!r}", init_arguments(func)
    converted = check_kwargs(
        func, kwargs, owner=name, what=what, path=args_path, source=source, problems=problems, skip=skip
    )
    return None if converted is None else InitCall(name, func, converted, fn_path)


def init_call(value: Any, path: SpecPath, source: Any, problems: ProblemList) -> InitCall | None:
    """Check one init value, ``zeros`` or ``{fn: normal, std: 0.1}``, found at ``path``.

    Also usable for tensors declared elsewhere in a spec (a Graph's ``parameters:``).
    """
    if isinstance(value, str):
        return _resolve_fn(value, {}, path, path, source, problems)
    if isinstance(value, dict) and isinstance(value.get("fn"), str):
        kwargs = {k: v for k, v in value.items() if k != "fn"}
        return _resolve_fn(value["fn"], kwargs, (*path, "fn"), path, source, problems)
    message = f"{path[-1]!r} must be an init function name or {{fn: <name>, <args>}}, got {describe(value)}"
    hint = "arguments of fn go beside it: {match: ..., fn: normal, std: 0.1}"
    problems.add(make_problem(source, path, message, hint))
    return None


def plan_rule(rule: InitRule, index: int, source: Any, problems: ProblemList) -> InitPlan | None:
    """Check one rule without a model (names, arguments, key combinations)."""
    path: SpecPath = ("init", index)
    extras = rule.extras
    set_keys = rule.model_fields_set
    types = as_list(rule.type)
    if rule.from_ is not None:
        bad = [k for k in ("type", "fn") if k in set_keys] + list(extras)
        for key in bad:
            message = f"a from: rule loads tensors by name and takes no {key!r}"
            allowed = ["match", "strip_prefix", "rename", "skip_mismatched", "strict"]
            hint = did_you_mean(key, allowed) or f"it takes {', '.join(allowed)}; put {key!r} in another rule"
            problems.add(make_problem(source, (*path, key), message, hint))
        return None if bad else InitPlan(index, "from", [], _matches(rule), {})
    ok = True
    for key in ("strip_prefix", "rename", "skip_mismatched", "strict"):
        if key in set_keys:
            problems.add(make_problem(source, (*path, key), f"{key!r} only applies to a from: rule"))
            ok = False
    if not types and rule.match is None:
        message = "rule selects nothing: it has neither type: nor match:"
        hint = "add type: <LayerType> or match: '<glob>' ('*' = all)"
        problems.add(make_problem(source, path, message, hint))
        ok = False
    if rule.fn is not None:
        call = _resolve_fn(rule.fn, extras, (*path, "fn"), path, source, problems)
        if call is None or not ok:
            return None
        return InitPlan(index, "fn", types, _matches(rule), {"": call})
    if not extras:
        message = "rule sets nothing: expected weight:, bias:, another parameter or buffer name, or fn:"
        hint = "e.g. {type: Linear, weight: xavier_uniform, bias: zeros}"
        problems.add(make_problem(source, path, message, hint))
        return None
    calls: dict[str, InitCall] = {}
    for key, value in extras.items():
        call = init_call(value, (*path, key), source, problems)
        if call is None:
            ok = False
        else:
            calls[key] = call
    return InitPlan(index, "keys", types, _matches(rule), calls) if ok else None


def _matches(rule: InitRule) -> list[str] | None:
    return None if rule.match is None else as_list(rule.match)


def selects_any(patterns: list[str] | None, name: str) -> bool:
    """Whether any of ``patterns`` selects ``name`` (None selects everything)."""
    return patterns is None or any(selects(p, name) for p in patterns)


def _run(call: InitCall, tensor: torch.Tensor) -> str | None:
    """Apply ``call`` to ``tensor``; the error text when the function cannot handle it."""
    try:
        # An FSDP shard: the whole tensor, then its part. On meta nothing is filled but every argument is
        # checked; non-float32 tensors are drawn in float32 and cast.
        fill_full(tensor, lambda full: fill(call.func, full, call.kwargs))
    except (ValueError, RuntimeError, TypeError, IndexError, ZeroDivisionError) as err:  # nn.init's kinds
        return first_line(err)
    return None


def _cannot(call: InitCall, index: int, name: str, tensor: torch.Tensor, error: str) -> str:
    shape = list(tensor.shape)
    return f"init rule {index} ({call.name}) cannot initialise {name!r} of shape {shape}: {error}"


def _selection(plan: InitPlan) -> str:
    return " and ".join(
        ([f"type {name_list(plan.types)}"] if plan.types else [])
        + ([f"match {name_list(map(repr, plan.match))}"] if plan.match is not None else [])
    )


@dataclass
class InitStep:
    """One rule resolved against a model's names: which tensor each call fills, in order."""

    rule: InitRule
    plan: InitPlan
    location: str  # "file:line" of the rule
    targets: list[tuple[str, InitCall]] = field(default_factory=list)  # tensor name, call (not for from:)


def _select_keys(model: nn.Module, plan: InitPlan, source: Any, problems: ProblemList) -> list[tuple[str, InitCall]]:
    path: SpecPath = ("init", plan.index)
    chosen = [
        (mname, module)
        for mname, module in model.named_modules()
        if (not plan.types or type_names(module) & set(plan.types))
        and (plan.match is None or any(selects_any(plan.match, join_name(mname, k)) for k in plan.calls))
    ]
    if not chosen:
        message = f"rule selects no module: {_selection(plan)} match nothing together"
        problems.add(make_problem(source, path, message, "check type: against match:"))
        return []
    targets: list[tuple[str, InitCall]] = []
    for key, call in plan.calls.items():
        owners = [(m, mod) for m, mod in chosen if key in mod._parameters or key in mod._buffers]
        if not owners:
            have = sorted({k for _, mod in chosen for k in (*mod._parameters, *mod._buffers)})
            message = f"no selected module has a parameter or buffer named {key!r}"
            hint = did_you_mean(key, have) or f"the selected modules have: {name_list(have) or 'nothing'}"
            problems.add(make_problem(source, call.path, message, hint))
            continue
        for mname, module in owners:
            tensor = module._parameters.get(key) if key in module._parameters else module._buffers.get(key)
            full = join_name(mname, key)
            if tensor is not None and selects_any(plan.match, full):
                targets.append((full, call))
    return targets


def _select_fn(model: nn.Module, plan: InitPlan, source: Any, problems: ProblemList) -> list[tuple[str, InitCall]]:
    wanted = set(plan.types)
    typed = {m for m, mod in model.named_modules() if type_names(mod) & wanted} if plan.types else None
    call = plan.calls[""]
    chosen = [
        (name, call)
        for name, _ in model.named_parameters()
        if selects_any(plan.match, name)
        and (typed is None or "" in typed or any(owner in typed for owner in _owners(name)))
    ]
    if not chosen:
        message = f"rule selects no parameter: {_selection(plan)} match nothing together"
        problems.add(make_problem(source, ("init", plan.index), message, "check type: against match:"))
    return chosen


def _named_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer by every name it has (a tied weight under each of its names)."""
    return {
        **dict(model.named_parameters(remove_duplicate=False)),
        **dict(model.named_buffers(remove_duplicate=False)),
    }


def _run_keys(step: InitStep, tensors: dict[str, torch.Tensor], source: Any, problems: ProblemList) -> list[str]:
    done: list[str] = []
    for full, call in step.targets:
        tensor = tensors[full]
        error = _run(call, tensor)
        if error is None:
            done.append(full)
        else:
            message = _cannot(call, step.plan.index, full, tensor, error)
            key = full.rsplit(".", 1)[-1]
            problems.add(make_problem(source, call.path, message, f"use another function for {key!r}"))
    return done


def _run_fn(step: InitStep, tensors: dict[str, torch.Tensor], source: Any, problems: ProblemList) -> list[str]:
    done: list[str] = []
    failed: list[tuple[str, torch.Tensor, str]] = []
    call = step.plan.calls[""]
    for name, _ in step.targets:
        error = _run(call, tensors[name])
        if error is None:
            done.append(name)
        else:
            failed.append((name, tensors[name], error))
    if failed and not done:  # the function suits none of the selected tensors: a real mistake
        name, param, error = failed[0]
        hint = "narrow the rule with type: or match:, or choose another function"
        problems.add(make_problem(source, call.path, _cannot(call, step.plan.index, name, param, error), hint))
    elif failed:  # e.g. {match: "fc3.*", fn: xavier_uniform}: the weight is set, the 1-D bias cannot be
        names = name_list([name for name, _, _ in failed], 6)
        message = f"{call.name} does not apply to {names} ({failed[0][2]}); left as they were"
        hint = "narrow match: (e.g. '<module>.weight') to silence this"
        problems.add(make_problem(source, call.path, message, hint, warning=True))
    return done


def _owners(name: str) -> list[str]:
    """Module names containing parameter ``name``: ``"a.b.w"`` -> ``["a", "a.b"]``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def plan_init(model: nn.Module, rules: list[InitRule] | None, source: Any, problems: ProblemList) -> list[InitStep]:
    """Resolve every rule against ``model``'s names, adding problems instead of raising; nothing is run."""
    steps: list[InitStep] = []
    names = model_names(model)
    for index, rule in enumerate(rules or []):
        plan = plan_rule(rule, index, source, problems)
        selectors_ok = True
        if rule.from_ is None:  # check the selectors against the model even when the rest is wrong
            types = as_list(rule.type)
            if types and not check_types(types, model, ("init", index, "type"), source, problems):
                selectors_ok = False
            for j, pattern in enumerate(as_list(rule.match)):
                if not select(pattern, names):
                    message, hint = no_match(pattern, names)
                    where = ("init", index, "match", j) if isinstance(rule.match, list) else ("init", index, "match")
                    problems.add(make_problem(source, where, message, hint))
                    selectors_ok = False
        if plan is None or not selectors_ok:
            continue
        step = InitStep(rule, plan, rule_location(source, ("init", index)))
        if plan.kind != "from":
            before = len(problems.errors)
            step.targets = (_select_fn if plan.kind == "fn" else _select_keys)(model, plan, source, problems)
            if len(problems.errors) > before:
                continue
        steps.append(step)
    return steps


def apply_init_steps(
    model: nn.Module, steps: list[InitStep], source: Any, base_dir: Path | None, problems: ProblemList
) -> tuple[dict[str, str], list[LoadReport]]:
    """Run planned rules on ``model`` in order, adding problems instead of raising.

    Returns (tensor name -> ``file:line`` of the last rule that set it, one report per ``from:`` rule).
    ``base_dir`` is the folder ``from:`` paths are relative to; ``None`` when the spec may read no files.
    """
    sources: dict[str, str] = {}
    reports: list[LoadReport] = []
    tensors = _named_tensors(model)
    for step in steps:
        if step.plan.kind == "from":
            report = load_rule(
                model,
                step.rule,
                step.plan.index,
                source=source,
                base_dir=base_dir,
                location=step.location,
                problems=problems,
            )
            if report is not None:
                reports.append(report)
                sources.update(dict.fromkeys(report.loaded, step.location))
            continue
        before = len(problems.errors)
        done = (_run_fn if step.plan.kind == "fn" else _run_keys)(step, tensors, source, problems)
        if len(problems.errors) == before:
            sources.update(dict.fromkeys(done, step.location))
    return sources, reports


def run_init(
    model: nn.Module,
    rules: list[InitRule] | None,
    source: Any,
    base_dir: Path | None,
    problems: ProblemList,
) -> tuple[dict[str, str], list[LoadReport]]:
    """Plan and apply every rule, adding problems instead of raising. Returns (sources, load reports)."""
    return apply_init_steps(model, plan_init(model, rules, source, problems), source, base_dir, problems)
