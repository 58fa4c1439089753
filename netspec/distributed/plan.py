"""``netspec.plan`` / ``netspec plan``: per-rank memory under the spec's ``distributed:`` section.

In: a spec (path, dict or ``Spec``), a world size and an optional device-memory budget. Out: a
``Plan`` — per FSDP unit and in total, the bytes one rank holds for parameters, gradients and
optimizer state, plus buffers and the largest unsharded all-gather — computed on the meta
device without a process group (nothing is allocated). The units and the checks are the
build's own (``units.unit_names``, ``units.check_ties``, the uninitialised-tensor check), so a
spec that plans also builds.

How the figures are counted (per rank, ``W`` = world size):

* FSDP2 shards every parameter on dim 0 and pads it to a multiple of ``W``: a ``[d0, *rest]``
  parameter holds ``ceil(d0 / W) * prod(rest)`` elements on each rank, in the build dtype.
* Gradients: the same for every trainable parameter (frozen ones have none).
* Optimizer state: ``STATE`` below — element-wise buffers per optimizer type and its settings
  (SGD's momentum buffer only when ``momentum != 0``, Adam/AdamW's two moments plus
  ``max_exp_avg_sq`` with ``amsgrad``, RMSprop's ``momentum_buffer``/``grad_avg`` when set,
  Adafactor's factored row and column variances, …) in the parameter dtype, plus 4-byte scalar
  tensors per parameter (``step``; NAdam's ``mu_product``; ASGD's ``eta``, ``mu``).
* Buffers are not sharded: every rank holds all of them.
* All-gather: a unit's parameters unsharded (padded) in ``mixed_precision.param_dtype`` (or the
  build dtype). The transient total adds the largest one (``reshard_after_forward: true``)
  or all of them (``false``: every unit stays gathered from its forward until its backward).
* ``ddp`` (and a spec without ``distributed:``): one unit, nothing sharded, no all-gather.

Activations, the CUDA caching allocator's slack, communication buckets and the second unit
FSDP2 prefetches are not counted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from ..errors import Problem, SpecError
from ..frontend.distributed_models import DistributedSpec
from ..training.kwargs import make_problem
from ..training.setup import apply_training
from .runtime import checked_meta_model, training_plan
from .units import DTYPE_NAMES, check_ties, owner_unit, unit_names

SCALAR_BYTES = 4  # torch keeps ``step`` and friends as float32 scalar tensors

# optimizer -> (element-wise state buffers, scalar states) for one parameter, from its group's settings
STATE: dict[str, Callable[[Mapping[str, Any]], tuple[int, int]]] = {
    "SGD": lambda g: (1 if g.get("momentum", 0) else 0, 0),
    "Adam": lambda g: (3 if g.get("amsgrad") else 2, 1),
    "AdamW": lambda g: (3 if g.get("amsgrad") else 2, 1),
    "Adamax": lambda g: (2, 1),
    "NAdam": lambda g: (2, 2),
    "RAdam": lambda g: (2, 1),
    "SparseAdam": lambda g: (2, 1),
    "Adagrad": lambda g: (1, 1),
    "Adadelta": lambda g: (2, 1),
    "RMSprop": lambda g: (1 + (1 if g.get("momentum", 0) else 0) + (1 if g.get("centered") else 0), 1),
    "Rprop": lambda g: (2, 1),
    "ASGD": lambda g: (1, 3),
    "Muon": lambda g: (1, 0),
}


@dataclass
class UnitPlan:
    """One FSDP unit (``""`` is the root): what one rank holds for it, in bytes."""

    name: str
    tensors: int  # parameters this unit manages (tied ones once)
    elements: int  # their unsharded element count
    parameters: int
    gradients: int
    optimizer: int
    all_gather: int  # the unit's parameters unsharded, in the all-gather dtype

    @property
    def persistent(self) -> int:
        return self.parameters + self.gradients + self.optimizer


@dataclass
class Plan:
    """Per-rank memory of a spec at a world size (``netspec.plan``)."""

    name: str
    strategy: str  # "fsdp", "ddp" or "none" (no distributed section: every rank holds everything)
    world_size: int
    optimizer: str | None
    units: list[UnitPlan]
    buffers: int  # bytes, on every rank
    reshard_after_forward: bool = True
    device_memory: int | None = None
    warnings: list[Problem] = field(default_factory=list)

    @property
    def parameters(self) -> int:
        return sum(u.parameters for u in self.units)

    @property
    def gradients(self) -> int:
        return sum(u.gradients for u in self.units)

    @property
    def optimizer_state(self) -> int:
        return sum(u.optimizer for u in self.units)

    @property
    def largest_all_gather(self) -> int:
        return max((u.all_gather for u in self.units), default=0)

    @property
    def transient(self) -> int:
        """Unsharded parameters alive at once: the largest unit, or every unit without resharding."""
        if self.reshard_after_forward:
            return self.largest_all_gather
        return sum(u.all_gather for u in self.units)

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer_state + self.buffers + self.transient

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "strategy": self.strategy,
            "world_size": self.world_size,
            "optimizer": self.optimizer,
            "reshard_after_forward": self.reshard_after_forward,
            "per_rank": {
                "parameters": self.parameters,
                "gradients": self.gradients,
                "optimizer_state": self.optimizer_state,
                "buffers": self.buffers,
                "largest_all_gather": self.largest_all_gather,
                "transient": self.transient,
                "total": self.total,
            },
            "device_memory": self.device_memory,
            "units": [asdict(u) for u in self.units],
            "warnings": [p.message for p in self.warnings],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_table(self) -> str:
        head = ("unit", "tensors", "elements", "params", "grads", "optim", "all-gather")
        rows = [
            (
                u.name or "<root>",
                f"{u.tensors:,}",
                f"{u.elements:,}",
                human(u.parameters),
                human(u.gradients),
                human(u.optimizer),
                human(u.all_gather),
            )
            for u in self.units
        ]
        rows.append(
            (
                "total",
                f"{sum(u.tensors for u in self.units):,}",
                f"{sum(u.elements for u in self.units):,}",
                human(self.parameters),
                human(self.gradients),
                human(self.optimizer_state),
                human(self.largest_all_gather) + " max",
            )
        )
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = [
            f"{self.name}: {self.strategy} at world size {self.world_size}, optimizer {self.optimizer or 'none'} "
            "(bytes per rank)"
        ]
        for i, row in enumerate([head, *rows]):
            cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))]
            lines.append("  ".join(cells).rstrip())
            if i == 0 or i == len(rows) - 1:
                lines.append("  ".join("-" * w for w in widths))
        gathered = "every unit gathered" if not self.reshard_after_forward else "the largest unit gathered"
        lines.append(f"buffers (every rank): {human(self.buffers)}")
        lines.append(f"per-rank total: {human(self.total)} ({gathered}; activations not counted)")
        if self.device_memory is not None:
            lines.append(f"device memory: {human(self.device_memory)}")
        return "\n".join(lines) + "\n"


def human(count: int) -> str:
    """Bytes in binary units: ``1.5 GiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{count} B"


def _shard_elements(shape: tuple[int, ...], world: int) -> int:
    """Elements FSDP2 keeps on each rank for a parameter of ``shape`` (dim 0 padded to a multiple of W)."""
    if not shape:
        return 1
    return math.ceil(shape[0] / world) * math.prod(shape[1:])


def _state_elements(kind: str, group: Mapping[str, Any], local: tuple[int, ...]) -> tuple[int, int] | None:
    """(element-wise state elements, scalar states) for one parameter's local shard."""
    if kind == "Adafactor":
        if len(local) >= 2:
            rows = math.prod(local[:-1])
            cols = math.prod(local[:-2]) * local[-1]
            return rows + cols, 1
        return math.prod(local), 1
    rule = STATE.get(kind)
    if rule is None:
        return None
    per_element, scalars = rule(group)
    return per_element * math.prod(local), scalars


def plan_spec(
    spec: Any,
    world_size: int,
    *,
    device_memory: int | None = None,
    dtype: torch.dtype | str | None = None,
) -> Plan:
    """Per-rank parameter, gradient and optimizer-state bytes of ``spec`` at ``world_size`` (on meta).

    Raises ``SpecError`` for what the distributed build would refuse (a ``shard`` pattern matching
    nothing, a tie split across units, a tensor nothing initialises) and for a world size below 1."""
    from ..compiler.meta import DTYPES

    if not isinstance(world_size, int) or isinstance(world_size, bool) or world_size < 1:
        raise SpecError(Problem(f"world_size must be a positive integer, got {world_size!r}"))
    if device_memory is not None and device_memory <= 0:
        raise SpecError(Problem(f"device memory must be a positive number of bytes, got {device_memory!r}"))
    torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    dspec: DistributedSpec = spec.document.distributed or DistributedSpec(strategy="ddp")
    strategy = dspec.strategy if spec.document.distributed is not None else "none"
    model, problems = checked_meta_model(spec, torch_dtype)
    fsdp = strategy == "fsdp"
    units = unit_names(model, dspec, spec.source, problems) if fsdp else [""]
    if fsdp:
        check_ties(model, units, spec.source, problems)
    if problems.errors:
        raise SpecError(problems.errors)
    # The optimizer (and which parameters it sees) as ``read`` planned it; nothing else of the set-up
    # changes a rank's bytes, and init rules on meta would fill nothing.
    optimizer_only = replace(training_plan(spec), init=[], scheduler=None, checkpointed=[], average=None)
    training = apply_training(model, optimizer_only, source=spec.source, base_dir=spec.base_dir)
    optimizer = training.optimizer
    kind = type(optimizer).__name__ if optimizer is not None else None
    group_of: dict[int, Mapping[str, Any]] = {}
    for group in optimizer.param_groups if optimizer is not None else []:
        for p in group["params"]:
            group_of[id(p)] = group
    mp = dspec.mixed_precision
    gather_dtype = DTYPE_NAMES[mp.param_dtype] if fsdp and mp is not None and mp.param_dtype else None
    shard_world = world_size if fsdp else 1
    rows = {name: UnitPlan(name, 0, 0, 0, 0, 0, 0) for name in units}
    unknown = False
    for name, param in model.named_parameters():
        unit = rows[owner_unit(name, units)]
        shape = tuple(param.shape)
        size = param.element_size()
        local_elems = _shard_elements(shape, shard_world)
        local = (math.ceil(shape[0] / shard_world), *shape[1:]) if shape else (1,)
        unit.tensors += 1
        unit.elements += param.numel()
        unit.parameters += local_elems * size
        if fsdp:
            gathered = local_elems * shard_world
            unit.all_gather += gathered * (gather_dtype.itemsize if gather_dtype is not None else size)
        if param.requires_grad:
            unit.gradients += local_elems * size
        group = group_of.get(id(param))
        if group is not None and kind is not None:
            counted = _state_elements(kind, group, local)
            if counted is None:
                unknown = True
                continue
            elements, scalars = counted
            unit.optimizer += elements * size + scalars * SCALAR_BYTES
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    result = Plan(
        spec.name,
        strategy,
        world_size,
        kind,
        [rows[name] for name in units],
        buffers,
        reshard_after_forward=dspec.reshard_after_forward if fsdp else True,
        device_memory=device_memory,
    )
    if strategy == "none":
        message = "the spec has no distributed: section: every rank holds the whole model (as with ddp)"
        result.warnings.append(make_problem(spec.source, (), message, warning=True))
    if unknown:
        message = f"optimizer {kind} keeps state netspec cannot size; its optimizer-state bytes are counted as 0"
        result.warnings.append(make_problem(spec.source, ("optimizer", "type"), message, warning=True))
    if device_memory is not None and result.total > device_memory:
        message = (
            f"a rank needs {human(result.total)} (parameters {human(result.parameters)}, gradients "
            f"{human(result.gradients)}, optimizer {human(result.optimizer_state)}, buffers {human(result.buffers)}, "
            f"unsharded {human(result.transient)}) but the device has {human(device_memory)}"
        )
        hint = "raise --world or shard more modules; optimizer state and gradients are sharded, buffers are not"
        result.warnings.append(make_problem(spec.source, ("distributed",), message, hint, warning=True))
    return result
