"""``scheduler:``: a ``torch.optim.lr_scheduler`` scheduler, optionally after a linear warm-up.

In: the built optimizer (or ``None``) and the ``SchedulerSpec``. Out: the scheduler and its
``interval`` (``"epoch"`` or ``"step"``: when a training loop calls ``scheduler.step()``);
or ``Problem``s (no optimizer, unknown scheduler or argument, a scheduler that needs Python
callables …).

``warmup: {steps: N, start_factor: f}`` is torch's own ``LinearLR(start_factor=f,
total_iters=N)`` followed by the main scheduler through ``SequentialLR(milestones=[N])``;
with no ``type``, the warm-up alone (the rate stays at the base rate afterwards).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import torch
from torch.optim import lr_scheduler

from ..errors import ProblemList, SpecError, first_line
from ..frontend.training_models import SchedulerSpec
from .kwargs import check_kwargs, look_up, make_problem

Scheduler = lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau

EXPECTED = "a torch.optim.lr_scheduler class name"  # what an unknown scheduler type is told

# Schedulers whose required arguments are Python objects (callables, other schedulers).
_NOT_EXPRESSIBLE = {
    "LambdaLR": "it needs a Python function (lr_lambda)",
    "MultiplicativeLR": "it needs a Python function (lr_lambda)",
    "SequentialLR": "it chains scheduler objects; use warmup: for a linear warm-up",
    "ChainedScheduler": "it chains scheduler objects; use warmup: for a linear warm-up",
}


@cache
def scheduler_classes() -> dict[str, type]:
    """Every public scheduler class in ``torch.optim.lr_scheduler`` (derived from torch itself)."""
    found: dict[str, type] = {}
    bases = tuple(c for c in (lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau) if inspect.isclass(c))
    for name in sorted(dir(lr_scheduler)):
        obj = getattr(lr_scheduler, name)
        public = not name.startswith("_") and obj is not lr_scheduler.LRScheduler
        if public and inspect.isclass(obj) and issubclass(obj, bases):
            found[name] = obj
    return found


def resolve_scheduler(
    spec: SchedulerSpec,
    source: Any,
    problems: ProblemList,
) -> tuple[type, dict[str, Any]] | None:
    """The scheduler class and its checked keyword arguments (no optimizer needed)."""
    if spec.type is None:
        if spec.extras:
            key = next(iter(spec.extras))
            problems.add(make_problem(source, ("scheduler", key), f"{key!r} needs a scheduler type"))
            return None
        return lr_scheduler.LinearLR, {}
    found = look_up(scheduler_classes(), spec.type, "scheduler", EXPECTED, ("scheduler", "type"), source, problems)
    if found is None:
        return None
    if spec.type in _NOT_EXPRESSIBLE:
        message = f"scheduler {spec.type} cannot be configured from a spec: {_NOT_EXPRESSIBLE[spec.type]}"
        problems.add(make_problem(source, ("scheduler", "type"), message))
        return None
    cls = found
    if spec.warmup is not None and issubclass(cls, lr_scheduler.ReduceLROnPlateau):
        message = f"warmup cannot be combined with {spec.type} (it steps on a metric; SequentialLR cannot)"
        problems.add(make_problem(source, ("scheduler", "warmup"), message))
        return None
    kwargs = check_kwargs(
        cls,
        spec.extras,
        owner=spec.type,
        what=f"scheduler {spec.type}",
        path=("scheduler",),
        source=source,
        problems=problems,
        skip=["optimizer"],
    )
    return None if kwargs is None else (cls, kwargs)


@dataclass
class SchedulerPlan:
    """The scheduler section resolved: its class and checked arguments (and the warm-up)."""

    spec: SchedulerSpec
    cls: type
    kwargs: dict[str, Any]


def plan_scheduler(
    spec: SchedulerSpec | None,
    source: Any,
    problems: ProblemList,
    *,
    has_optimizer: bool,
    optimizer_in_spec: bool = False,
) -> SchedulerPlan | None:
    """Resolve the scheduler section, adding problems instead of raising. ``optimizer_in_spec``: the
    spec has an optimizer that failed (so "no optimizer" is not reported again)."""
    if spec is None:
        return None
    resolved = resolve_scheduler(spec, source, problems)
    if not has_optimizer:
        if not optimizer_in_spec:
            message = "a scheduler needs an optimizer, and the spec has none"
            problems.add(make_problem(source, ("scheduler",), message, "add optimizer: {type: SGD, lr: 0.1}"))
        return None
    return None if resolved is None else SchedulerPlan(spec, *resolved)


# What torch schedulers raise for settings they refuse (a bad milestone list, a wrong type).
SCHEDULER_ERRORS = (ValueError, TypeError, RuntimeError, KeyError, IndexError, ZeroDivisionError)


def make_scheduler(
    optimizer: torch.optim.Optimizer, plan: SchedulerPlan, source: Any, problems: ProblemList
) -> Scheduler | None:
    """Construct the planned scheduler on ``optimizer``; ``None`` after a problem."""
    spec, cls, kwargs = plan.spec, plan.cls, plan.kwargs
    try:
        if spec.type is None and spec.warmup is not None:
            scheduler: Scheduler = lr_scheduler.LinearLR(
                optimizer,
                start_factor=spec.warmup.start_factor,
                end_factor=1.0,
                total_iters=spec.warmup.steps,
            )
        elif spec.warmup is not None:
            warm = lr_scheduler.LinearLR(
                optimizer,
                start_factor=spec.warmup.start_factor,
                end_factor=1.0,
                total_iters=spec.warmup.steps,
            )
            main = cls(optimizer, **kwargs)
            scheduler = lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[spec.warmup.steps])
        else:
            scheduler = cls(optimizer, **kwargs)
    except SCHEDULER_ERRORS as err:
        message = f"scheduler {spec.type or 'LinearLR'} rejected its settings: {first_line(err)}"
        problems.add(make_problem(source, ("scheduler",), message))
        return None
    return scheduler


def run_scheduler(
    optimizer: torch.optim.Optimizer | None,
    spec: SchedulerSpec | None,
    source: Any,
    problems: ProblemList,
    *,
    optimizer_in_spec: bool = False,
) -> tuple[Scheduler | None, Literal["epoch", "step"]]:
    """Plan and build the scheduler, adding problems instead of raising. ``optimizer_in_spec``: the
    spec has an optimizer that failed to build (so "no optimizer" is not reported again)."""
    if spec is None:
        return None, "epoch"
    plan = plan_scheduler(
        spec, source, problems, has_optimizer=optimizer is not None, optimizer_in_spec=optimizer_in_spec
    )
    if plan is None or optimizer is None:
        return None, spec.interval
    return make_scheduler(optimizer, plan, source, problems), spec.interval


def build_scheduler(
    optimizer: torch.optim.Optimizer | None, spec: SchedulerSpec | None, source: Any
) -> tuple[Scheduler | None, Literal["epoch", "step"]]:
    """Build the scheduler; returns (scheduler, interval). Raises ``SpecError`` on bad input."""
    problems = ProblemList()
    result = run_scheduler(optimizer, spec, source, problems)
    if problems.errors:
        raise SpecError(problems.errors)
    return result
