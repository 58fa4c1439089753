"""The training set-up: the stages in order, with every problem reported at once.

In: a constructed model and the spec's ``tie``, ``init``, ``freeze``, ``eval``, ``optimizer``,
``scheduler``, ``checkpoint_activations`` and ``average`` sections, the ``Source`` (for
locations) and the spec's directory (for ``from:`` paths). Out: a ``TrainingSetup``
(optimizer, scheduler, clipping, the averaged copy, and what each rule did, for
``explain``); or one ``SpecError`` holding the problems of all stages.

Order: ties first (so every later stage sees one shared tensor), then init, freeze, eval,
optimizer, scheduler, activation checkpointing and last the average (a copy of the
initialised model).

``plan_and_setup`` (``netspec.read``, on the meta model) resolves every section against the
model's names once — a ``TrainingPlan``: the checked ties, which tensor each init rule fills,
the frozen parameters and pinned modules, the optimizer's groups by parameter name, the
scheduler, the modules under activation checkpointing, whether the average can be made — and
carries it out; ``apply_training`` (``netspec.build``) carries the same plan out on the real
model, selecting nothing again (no pattern is matched, no name looked up twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from ..errors import Problem, ProblemList, SpecError
from ..frontend.training_models import AverageSpec, EvalRule, FreezeRule, InitRule, OptimizerSpec, SchedulerSpec
from .activations import select_checkpointed, wrap_named
from .average import Averager, build_averager, check_average
from .freeze import freeze_selected, select_eval, select_freeze
from .init import InitStep, apply_init_steps, plan_init, plan_rule, run_init
from .kwargs import make_problem
from .load import LoadReport
from .optim import GradClip, OptimizerPlan, make_optimizer, plan_optimizer, resolve_optimizer
from .sched import Scheduler, SchedulerPlan, make_scheduler, plan_scheduler, resolve_scheduler
from .tie import apply_ties, check_ties, tied_names


@dataclass
class TrainingSetup:
    """Everything the training sections produced for one model."""

    optimizer: torch.optim.Optimizer | None = None
    scheduler: Scheduler | None = None
    scheduler_interval: Literal["epoch", "step"] = "epoch"
    clip: GradClip | None = None
    init_sources: dict[str, str] = field(default_factory=dict)  # tensor name -> "file:line" of its rule
    frozen: set[str] = field(default_factory=set)  # frozen parameter names
    group_of: dict[str, int] = field(default_factory=dict)  # trainable name -> optimizer.param_groups index
    load_reports: list[LoadReport] = field(default_factory=list)  # one per `from:` rule
    group_labels: list[str] = field(default_factory=list)  # per param group: "groups.0", "default (no_decay)"
    eval_modules: set[str] = field(default_factory=set)  # modules pinned to eval mode by freeze or eval
    ties: dict[str, str] = field(default_factory=dict)  # tie: key -> the parameter it shares
    checkpointed: list[str] = field(default_factory=list)  # modules under activation checkpointing
    averager: Averager | None = None  # average: the EMA / SWA copy
    shared: dict[str, list[str]] = field(default_factory=dict)  # tied tensors: first name -> its other names
    param_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # every parameter, model order
    warnings: list[Problem] = field(default_factory=list)  # e.g. an init fn that skipped 1-D biases

    def __repr__(self) -> str:
        """One line: what was set up, not every tensor name (a ResNet's set-up would print pages)."""
        parts = []
        if self.optimizer is not None:
            groups = len(self.optimizer.param_groups)
            parts.append(f"optimizer={type(self.optimizer).__name__} ({groups} group{'s' * (groups != 1)})")
        if self.scheduler is not None:
            parts.append(f"scheduler={type(self.scheduler).__name__} per {self.scheduler_interval}")
        if self.clip is not None:
            parts.append(f"clip={self.clip.describe()}")
        if self.frozen:
            parts.append(f"frozen={len(self.frozen)} tensors")
        if self.eval_modules:
            parts.append(f"eval={len(self.eval_modules)} modules")
        if self.load_reports:
            parts.append(f"loaded={len(self.load_reports)} files")
        parts.append(f"params={len(self.param_shapes)} tensors")
        return "TrainingSetup(" + ", ".join(parts) + ")"

    def clip_gradients(self, model: nn.Module) -> float | None:
        """Apply ``clip_grad``; the total gradient norm for norm clipping, else ``None``."""
        return None if self.clip is None else self.clip.apply(model)


def _raise(problems: ProblemList) -> None:
    if problems.errors:
        raise SpecError(problems.errors)


def apply_init(
    model: nn.Module,
    rules: list[InitRule] | None,
    source: Any,
    base_dir: Path | None,
    *,
    reports: list[LoadReport] | None = None,
    warnings: list[Problem] | None = None,
) -> dict[str, str]:
    """Initialise ``model`` per ``rules`` (call inside a seeded RNG context).

    Returns tensor name -> ``file:line`` of the last rule that set it; ``reports``, when given,
    receives one ``LoadReport`` per ``from:`` rule and ``warnings`` the non-fatal problems.
    Raises ``SpecError`` with every problem.
    """
    problems = ProblemList()
    sources, loaded = run_init(model, rules, source, base_dir, problems)
    _raise(problems)
    if reports is not None:
        reports.extend(loaded)
    if warnings is not None:
        warnings.extend(problems.warnings)
    return sources


@dataclass
class TrainingPlan:
    """The training sections resolved against a model's names, once per ``netspec.read``.

    The checked ties, which tensor each init rule fills, which parameters are frozen and which
    modules pinned to eval, the optimizer's class, arguments and param groups (by parameter
    name), the scheduler's class and arguments, the modules whose activations are
    recomputed (outermost, by name) and the average (already checked against the optimizer).
    ``apply_training`` carries it out on any model with the same names: the meta model
    ``read`` checks, then the real one ``build`` returns.
    """

    init: list[InitStep] = field(default_factory=list)
    frozen: set[str] = field(default_factory=set)
    pinned: set[str] = field(default_factory=set)  # by freeze: {eval: true} and by eval:
    optimizer: OptimizerPlan | None = None
    scheduler: SchedulerPlan | None = None
    scheduler_interval: Literal["epoch", "step"] = "epoch"
    tie: dict[str, str] = field(default_factory=dict)
    checkpointed: list[str] = field(default_factory=list)
    average: AverageSpec | None = None


@dataclass
class TrainingSections:
    """The training sections of a document, as ``plan_and_setup`` takes them."""

    init: list[InitRule] | None = None
    freeze: list[FreezeRule] | None = None
    optimizer: OptimizerSpec | None = None
    scheduler: SchedulerSpec | None = None
    tie: dict[str, str] | None = None
    eval: list[EvalRule] | None = None
    checkpoint_activations: list[str] | None = None
    average: AverageSpec | None = None


def _plan(
    model: nn.Module, sections: TrainingSections, ties: dict[str, str], source: Any, problems: ProblemList
) -> TrainingPlan:
    """The plan for ``model`` (``ties``, checked, already applied), adding problems instead of raising."""
    steps = plan_init(model, sections.init, source, problems)
    before = len(problems.errors)
    frozen, pinned = select_freeze(model, sections.freeze, source, problems)
    opt = plan_optimizer(model, sections.optimizer, frozen, source, problems)
    if len(problems.errors) > before:  # a wrong freeze entry freezes nothing
        frozen, pinned = set(), set()
    pinned |= select_eval(model, sections.eval, source, problems)
    sched = plan_scheduler(
        sections.scheduler,
        source,
        problems,
        has_optimizer=opt is not None,
        optimizer_in_spec=sections.optimizer is not None,
    )
    interval = sections.scheduler.interval if sections.scheduler is not None else "epoch"
    checkpointed = select_checkpointed(model, sections.checkpoint_activations, source, problems)
    average = sections.average if check_average(sections.average, opt is not None, source, problems) else None
    return TrainingPlan(steps, frozen, pinned, opt, sched, interval, ties, checkpointed, average)


def _apply(
    model: nn.Module,
    plan: TrainingPlan,
    source: Any,
    base_dir: Path | None,
    problems: ProblemList,
    tied: bool = False,
) -> TrainingSetup:
    """Carry ``plan`` out on ``model``; ``tied``: its ties are already applied (by ``plan_and_setup``)."""
    if not tied:
        apply_ties(model, plan.tie)
    sources, reports = apply_init_steps(model, plan.init, source, base_dir, problems)
    freeze_selected(model, plan.frozen, plan.pinned)
    opt_plan = plan.optimizer
    opt = make_optimizer(model, opt_plan, source, problems) if opt_plan is not None else None
    sched = make_scheduler(opt, plan.scheduler, source, problems) if opt is not None and plan.scheduler else None
    checkpointed = wrap_named(model, plan.checkpointed)
    averager = build_averager(model, plan.average, opt, source, problems) if not problems.errors else None
    built = opt is not None and opt_plan is not None
    return TrainingSetup(
        optimizer=opt,
        scheduler=sched,
        scheduler_interval=plan.scheduler_interval,
        clip=opt_plan.clip if built and opt_plan else None,
        init_sources=sources,
        frozen=set(plan.frozen),
        group_of=opt_plan.group_of if built and opt_plan else {},
        load_reports=reports,
        group_labels=opt_plan.labels if built and opt_plan else [],
        eval_modules=set(plan.pinned),
        ties=dict(plan.tie),
        checkpointed=checkpointed,
        averager=averager,
        shared=tied_names(model),
        param_shapes={name: () if is_lazy(p) else tuple(p.shape) for name, p in model.named_parameters()},
        warnings=problems.warnings,
    )


def apply_training(model: nn.Module, plan: TrainingPlan, *, source: Any, base_dir: Path | None) -> TrainingSetup:
    """Carry out ``plan`` on ``model`` (call inside a seeded RNG context): ties, init rules, frozen
    parameters, eval pins, the optimizer and scheduler, activation checkpointing and the average.
    One ``SpecError`` for all problems."""
    problems = ProblemList()
    setup = _apply(model, plan, source, base_dir, problems)
    _raise(problems)
    return setup


def plan_and_setup(
    model: nn.Module, sections: TrainingSections, *, source: Any, base_dir: Path | None
) -> tuple[TrainingPlan, TrainingSetup]:
    """Plan against ``model``'s names, then carry the plan out on it; one ``SpecError`` for all problems."""
    problems = ProblemList()
    ties = check_ties(model, sections.tie, source, problems)
    apply_ties(model, ties)  # first: every later stage sees one shared tensor
    plan = _plan(model, sections, ties, source, problems)
    setup = _apply(model, plan, source, base_dir, problems, tied=True)
    _raise(problems)
    return plan, setup


def setup_training(
    model: nn.Module,
    *,
    init: list[InitRule] | None,
    freeze: list[FreezeRule] | None,
    optimizer: OptimizerSpec | None,
    scheduler: SchedulerSpec | None,
    source: Any,
    base_dir: Path | None,
    tie: dict[str, str] | None = None,
    eval: list[EvalRule] | None = None,
    checkpoint_activations: list[str] | None = None,
    average: AverageSpec | None = None,
) -> TrainingSetup:
    """Run every stage in order (see the module docstring); one ``SpecError`` for all problems."""
    sections = TrainingSections(init, freeze, optimizer, scheduler, tie, eval, checkpoint_activations, average)
    return plan_and_setup(model, sections, source=source, base_dir=base_dir)[1]


def check_training(
    *,
    init: list[InitRule] | None = None,
    freeze: list[FreezeRule] | None = None,
    optimizer: OptimizerSpec | None = None,
    scheduler: SchedulerSpec | None = None,
    source: Any = None,
) -> list[Problem]:
    """Every problem findable without a model: init function names and arguments, optimizer
    and scheduler names and arguments, a scheduler without an optimizer. For ``validate``."""
    problems = ProblemList()
    for index, rule in enumerate(init or []):
        plan_rule(rule, index, source, problems)
    if optimizer is not None:
        resolve_optimizer(optimizer, source, problems)
    if scheduler is not None:
        resolve_scheduler(scheduler, source, problems)
        if optimizer is None:
            message = "a scheduler needs an optimizer, and the spec has none"
            problems.add(make_problem(source, ("scheduler",), message, "add optimizer: {type: SGD, lr: 0.1}"))
    # ``freeze`` entries are patterns and layer types: they can only be checked against a model.
    return problems.problems
