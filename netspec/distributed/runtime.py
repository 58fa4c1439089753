"""Building a spec under a process group: FSDP2 (``fully_shard``) or ``DistributedDataParallel``.

In: a validated ``Spec`` with a ``distributed:`` section, this rank's ``DistContext`` and the
build dtype. Out, for ``fsdp``: ``prepare_fsdp`` — the model built on meta, checked (nothing
left uninitialised, every ``shard`` pattern matching, ties inside one unit, usable
mixed-precision dtypes), sharded bottom-up with ``fully_shard`` and then the root, and
allocated with ``to_empty`` on the rank's device; ``materialize`` (run inside the build's
seeded RNG context) then writes the values a single-process build would have made. For
``ddp``: ``wrap_ddp`` checks with one all-reduce that every rank built the same weights and
wraps the model in ``DistributedDataParallel`` (``Built.module`` is the model inside it, whose
state_dict keys carry no ``module.``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..compiler.construct import copy_graphs
from ..errors import ProblemList, SpecError
from ..frontend.distributed_models import DistributedSpec
from ..training.average import Averager, build_averager
from ..training.kwargs import make_problem
from ..training.setup import TrainingPlan, apply_init
from ..training.sharded import is_sharded
from ..training.tie import apply_ties
from .context import DistContext
from .materialize import build_meta_tracked, replay
from .units import check_precision, check_ties, unit_names


def _layer_nodes(node: Any) -> Iterator[Any]:
    if node.kind == "layer":
        yield node
    for child in node.children.values():
        yield from _layer_nodes(child)


def uninitialised_problems(spec: Any, model: nn.Module, unfilled: list[str], problems: ProblemList) -> None:
    """Tensors a constructor left empty must be set by an ``init:`` rule (checked on meta), else one
    problem per layer, at the place the layer is written."""
    if not unfilled:
        return
    covered = apply_init(model, spec.document.init, spec.source, spec.base_dir)  # on meta: names only
    missing = [name for name in unfilled if name not in covered]
    if not missing:
        return
    layers = {node.name: node for node in _layer_nodes(spec.inferred.root)}
    by_layer: dict[str, list[str]] = {}
    for name in missing:
        owner = name.rpartition(".")[0]
        while owner and owner not in layers:
            owner = owner.rpartition(".")[0]
        by_layer.setdefault(owner, []).append(name)
    for owner, names in by_layer.items():
        node = layers.get(owner)
        cls = node.type_name if node is not None else type(model).__name__
        path = (node.use_path or node.path) if node is not None else ("model",)
        shown = ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        message = (
            f"{shown} would be left uninitialised: {cls} creates {'it' if len(names) == 1 else 'them'} with "
            "torch.empty and fills nothing, and no init: rule selects " + ("it" if len(names) == 1 else "them")
        )
        hint = f"add an init rule, e.g. {{match: {names[0]!r}, fn: normal}}, or fill it in {cls}.__init__"
        problems.add(make_problem(spec.source, tuple(path), message, hint))


def training_plan(spec: Any) -> TrainingPlan:
    """What ``netspec.read`` resolved of the spec's training sections (an empty plan when it has none)."""
    return spec.training_plan if spec.training_plan is not None else TrainingPlan()


def checked_meta_model(spec: Any, dtype: torch.dtype | None) -> tuple[nn.Module, ProblemList]:
    """The model on meta with the spec's ties applied (FSDP must see a shared tensor as one before it
    shards; the ties were checked when the spec was read), and the problems found so far: tensors
    nothing initialises."""
    inferred = spec.inferred
    model, unfilled = build_meta_tracked(inferred.root, copy_graphs(inferred.graphs), dtype, inferred.lazy_inputs)
    problems = ProblemList()
    apply_ties(model, training_plan(spec).tie)
    uninitialised_problems(spec, model, unfilled, problems)
    return model, problems


def prepare_fsdp(
    spec: Any, dspec: DistributedSpec, ctx: DistContext, dtype: torch.dtype | None
) -> tuple[nn.Module, Unsharded]:
    """Meta build, checks, ``fully_shard`` bottom-up then the root, ``to_empty`` on the rank's device.

    Raises ``SpecError`` (every problem, before any memory is allocated)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy

    model, problems = checked_meta_model(spec, dtype)
    units = unit_names(model, dspec, spec.source, problems)
    check_ties(model, units, spec.source, problems)
    param_dtype, reduce_dtype = check_precision(dspec, ctx.device, ctx.backend, spec.source, problems)
    if problems.errors:
        raise SpecError(problems.errors)
    twin = copy.deepcopy(model) if training_plan(spec).average is not None else None  # FSDP modules cannot be copied
    mesh = init_device_mesh(ctx.device.type, (ctx.world_size,))
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    shard(model, units, mesh, dspec.reshard_after_forward, policy, ctx.device)
    return model, Unsharded(twin, units, mesh, dspec.reshard_after_forward, policy)


def shard(model: nn.Module, units: list[str], mesh: Any, reshard: bool, policy: Any, device: torch.device) -> nn.Module:
    """``fully_shard`` each unit (deepest first, the root last), then allocate the shards on ``device``."""
    from torch.distributed.fsdp import fully_shard

    for name in units:
        module = model.get_submodule(name) if name else model
        fully_shard(module, mesh=mesh, reshard_after_forward=reshard, mp_policy=policy)
    model.to_empty(device=device)
    return model


@dataclass
class Unsharded:
    """A meta copy of the model taken before sharding, and how it was sharded: ``average:``'s copy."""

    model: nn.Module | None
    units: list[str]
    mesh: Any
    reshard: bool
    policy: Any


@torch.no_grad()
def shard_average(
    spec: Any, model: nn.Module, unsharded: Unsharded, optimizer: Any, ctx: DistContext
) -> Averager | None:
    """``average:`` under FSDP: the ``AveragedModel`` is made from the meta copy (FSDP modules refuse
    ``deepcopy``), sharded like the model, and starts from the model's own shards."""
    average_spec = training_plan(spec).average  # checked against the optimizer when the spec was read
    if average_spec is None or unsharded.model is None:
        return None
    problems = ProblemList()
    averager = build_averager(unsharded.model, average_spec, optimizer, spec.source, problems)
    if problems.errors or averager is None:
        raise SpecError(problems.errors)
    copy_module = averager.averaged.module
    shard(copy_module, unsharded.units, unsharded.mesh, unsharded.reshard, unsharded.policy, ctx.device)
    averager.averaged.to(ctx.device)
    mine = [*copy_module.parameters(), *copy_module.buffers()]
    for target, value in zip(mine, [*model.parameters(), *model.buffers()], strict=True):
        (target.to_local() if is_sharded(target) else target).copy_(value.to_local() if is_sharded(value) else value)
    average = averager.averaged.multi_avg_fn
    if average is not None:  # EMA averages buffers too: foreach ops cannot mix DTensor shards and plain buffers
        averager.averaged.multi_avg_fn = _split_by_kind(average)
    return averager


def _split_by_kind(average: Any) -> Any:
    def split(averaged: list[torch.Tensor], current: list[torch.Tensor], count: Any) -> None:
        groups: dict[bool, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for a, c in zip(averaged, current, strict=True):
            pair = groups.setdefault(is_sharded(a), ([], []))
            pair[0].append(a)
            pair[1].append(c)
        for a_list, c_list in groups.values():
            average(a_list, c_list, count)

    return split


def materialize(spec: Any, model: nn.Module, ctx: DistContext, dtype: torch.dtype | None) -> None:
    """Write the single-process build's values into the sharded model (inside the seeded RNG context)."""
    inferred = spec.inferred
    tied = frozenset(spec.document.tie or {})
    replay(inferred.root, model, ctx.device, dtype, copy_graphs(inferred.graphs), inferred.lazy_inputs, tied)


@torch.no_grad()
def checksum(model: nn.Module) -> float:
    """A position-sensitive float64 sum of every parameter and buffer."""
    total = 0.0
    for i, tensor in enumerate([*model.parameters(), *model.buffers()]):
        values = tensor.detach().to(torch.float64).flatten()
        weights = torch.arange(values.numel(), dtype=torch.float64, device=values.device).remainder_(97).add_(1)
        total += (i + 1) * float((values * weights).sum())
    return total


def wrap_ddp(model: nn.Module, ctx: DistContext, source: Any) -> nn.Module:
    """Check (one all-reduce) that every rank holds the same weights, then wrap in DDP."""
    mine = checksum(model)
    both = torch.tensor([mine, -mine], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    highest, lowest = float(both[0]), -float(both[1])
    if highest != lowest:
        message = (
            f"ranks built different weights (checksums range from {lowest!r} to {highest!r}; rank {ctx.rank}: "
            f"{mine!r}): DDP needs the same initial weights everywhere"
        )
        hint = "give the spec a seed: (and the same overrides on every rank)"
        raise SpecError(make_problem(source, ("distributed", "strategy"), message, hint))
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
