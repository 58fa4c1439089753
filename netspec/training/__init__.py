"""Training set-up from a spec (contract section 3): init, freeze, optimizer, scheduler.

In: a constructed ``nn.Module`` and the spec's ``init``, ``freeze``, ``optimizer`` and
``scheduler`` sections (the pydantic models of ``netspec.training.spec``). Out: a
``TrainingSetup`` with the optimizer, scheduler, gradient clipping and a record of what every
rule did; every problem with those sections as one ``SpecError``.

Stages, usable alone: ``apply_init`` -> ``apply_freeze`` -> ``build_optimizer`` ->
``build_scheduler``; ``setup_training`` runs all four. ``plan_and_setup`` resolves the sections
against a model's names once (``netspec.read`` does, on the meta model) and ``apply_training``
carries that plan out on a model (``netspec.build``, on the real one). ``check_training`` finds the problems
that need no model (for ``netspec validate``). ``explain_rows`` / ``format_explain`` /
``group_summary`` describe the result.
"""

from __future__ import annotations

from ..frontend.training_models import FreezeByType, FreezeRule, InitRule, OptimizerSpec, SchedulerSpec
from .explain import compress_names, explain_rows, format_explain, group_summary
from .freeze import apply_freeze, is_eval_frozen, pin_eval, unfreeze_eval
from .init import init_functions
from .load import LoadReport
from .optim import NORM_LAYERS, GradClip, build_optimizer, optimizer_classes
from .sched import build_scheduler, scheduler_classes
from .setup import (
    TrainingPlan,
    TrainingSections,
    TrainingSetup,
    apply_init,
    apply_training,
    check_training,
    plan_and_setup,
    setup_training,
)

__all__ = [
    "NORM_LAYERS",
    "FreezeByType",
    "FreezeRule",
    "GradClip",
    "InitRule",
    "LoadReport",
    "OptimizerSpec",
    "SchedulerSpec",
    "TrainingPlan",
    "TrainingSections",
    "TrainingSetup",
    "apply_freeze",
    "apply_init",
    "apply_training",
    "build_optimizer",
    "build_scheduler",
    "check_training",
    "compress_names",
    "explain_rows",
    "format_explain",
    "group_summary",
    "init_functions",
    "is_eval_frozen",
    "optimizer_classes",
    "pin_eval",
    "plan_and_setup",
    "scheduler_classes",
    "setup_training",
    "unfreeze_eval",
]
