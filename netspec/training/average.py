"""``average:``: an EMA or SWA copy of the weights, with ``torch.optim.swa_utils``.

In: the built model (after init and freeze), its optimizer and the ``AverageSpec``. Out: an
``Averager`` holding ``averaged`` (a ``torch.optim.swa_utils.AveragedModel``), for ``swa`` a
``SWALR`` scheduler over the optimizer, and the number of ``update`` calls so far; or
``Problem``s (``swa`` without an optimizer).

* ``ema``: ``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)``;
  every ``update`` call moves parameters and buffers towards the model (the first call copies).
* ``swa``: ``AveragedModel(model)`` (equal-weight mean of the parameters; buffers are not
  averaged, recompute BatchNorm statistics with ``torch.optim.swa_utils.update_bn``) and
  ``SWALR(optimizer, swa_lr=lr, anneal_epochs, anneal_strategy)``. ``start`` counts
  ``update`` calls: the first ``start`` calls only count, every later one averages. Call it
  once per epoch (SWA's usual unit) or once per step; ``start`` is in that unit.

``state_dict`` / ``load_state_dict`` carry the averaged weights, ``n_averaged``, the call count
and SWALR's state, so a resumed run averages exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn

from ..errors import ProblemList, first_line
from ..frontend.training_models import AverageSpec
from .kwargs import make_problem

DEFAULT_EMA_DECAY = 0.9999


@dataclass
class Averager:
    """The averaged copy of a model and when to update it."""

    averaged: AveragedModel
    kind: Literal["ema", "swa"]
    start: int = 0
    scheduler: SWALR | None = None
    calls: int = 0

    def update(self, model: nn.Module) -> bool:
        """Count one call; average ``model`` into the copy unless SWA has not started. True when it did."""
        self.calls += 1
        if self.kind == "swa" and self.calls <= self.start:
            return False
        self.averaged.update_parameters(model)
        return True

    @property
    def started(self) -> bool:
        """Whether the next ``update`` call averages (always, for EMA)."""
        return self.kind == "ema" or self.calls >= self.start

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "calls": self.calls,
            "averaged": self.averaged.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from ``state_dict()``; ``ValueError`` when it does not fit this averager."""
        if state.get("kind") != self.kind:
            raise ValueError(f"the saved average is {state.get('kind')!r}, the spec builds {self.kind!r}")
        calls = state.get("calls")
        averaged = state.get("averaged")
        if not isinstance(calls, int) or not isinstance(averaged, Mapping):
            raise ValueError("the saved average has no call count or no averaged weights")
        try:
            self.averaged.load_state_dict(averaged, strict=True)
        except RuntimeError as err:
            raise ValueError(first_line(err)) from None
        saved_sched = state.get("scheduler")
        if self.scheduler is not None and isinstance(saved_sched, Mapping):
            self.scheduler.load_state_dict(dict(saved_sched))
        self.calls = calls


def check_average(spec: AverageSpec | None, has_optimizer: bool, source: Any, problems: ProblemList) -> bool:
    """Whether ``spec`` can be met (``swa`` anneals the optimizer's rate, so it needs one); adds the problem."""
    if spec is None or spec.type == "ema" or has_optimizer:
        return True
    message = "average: {type: swa} anneals the optimizer's learning rate with SWALR, and the spec has no optimizer"
    problems.add(make_problem(source, ("average", "type"), message, "add optimizer:, or use type: ema"))
    return False


def build_averager(
    model: nn.Module,
    spec: AverageSpec | None,
    optimizer: torch.optim.Optimizer | None,
    source: Any,
    problems: ProblemList,
) -> Averager | None:
    """The ``Averager`` for ``spec``, or None (with a problem when the spec cannot be met)."""
    if spec is None:
        return None
    if spec.type == "ema":
        decay = DEFAULT_EMA_DECAY if spec.decay is None else spec.decay
        averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        return Averager(averaged, "ema")
    if optimizer is None:
        check_average(spec, False, source, problems)
        return None
    scheduler = SWALR(
        optimizer,
        swa_lr=float(spec.lr or 0.0),
        anneal_epochs=10 if spec.anneal_epochs is None else spec.anneal_epochs,
        anneal_strategy=spec.anneal_strategy or "cos",
    )
    return Averager(AveragedModel(model), "swa", start=spec.start or 0, scheduler=scheduler)
