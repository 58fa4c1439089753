"""``optimizer:``: a ``torch.optim`` optimizer with per-group options, no-decay split and clipping.

In: the model, the ``OptimizerSpec`` and the frozen parameter names. Out: the optimizer,
``group_of`` (trainable parameter name -> index into ``optimizer.param_groups``), a label per
torch param group (``groups.0``, ``groups.0 (no_decay)``, ``default`` …) and the gradient
clipping settings; or ``Problem``s (unknown optimizer or argument, group pattern selecting
nothing, a group that only re-selects parameters taken by an earlier group, …).

Group resolution: every trainable parameter lands in exactly one group. Spec groups are
tried in order and the first whose ``params`` selects a parameter takes it; what is left
forms the default group. A group's ``lr`` is ``(group lr or optimizer lr) * lr_mult`` and its
``weight_decay`` is ``(group weight_decay or optimizer weight_decay) * decay_mult``. With
``no_decay``, each group with non-zero weight decay is split in two torch param groups: its
other parameters and its no-decay parameters (weight_decay 0), in that order.
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import torch
from torch import nn

from ..errors import ProblemList, SpecError, SpecPath, did_you_mean, first_line
from ..frontend.training_models import OptimizerSpec
from .init import as_list
from .kwargs import check_kwargs, look_up, make_problem, name_list, signature_params
from .patterns import model_names, no_match, select
from .sharded import is_sharded

EXPECTED = "a torch.optim optimizer class name"  # what an unknown optimizer type is told

NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm and their Lazy forms
    nn.LayerNorm,
    nn.GroupNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),  # torch >= 2.4
    nn.LocalResponseNorm,  # has no parameters, listed for completeness
)


@cache
def optimizer_classes() -> dict[str, type[torch.optim.Optimizer]]:
    """Every public ``torch.optim`` optimizer class, by name (derived from torch itself)."""
    found: dict[str, type[torch.optim.Optimizer]] = {}
    for name in sorted(dir(torch.optim)):
        obj = getattr(torch.optim, name)
        if (
            not name.startswith("_")
            and inspect.isclass(obj)
            and issubclass(obj, torch.optim.Optimizer)
            and obj is not torch.optim.Optimizer
        ):
            found[name] = obj
    return found


@dataclass(frozen=True)
class GradClip:
    """``clip_grad``: norm clipping (``max_norm``, ``norm_type``) or value clipping (``max_value``)."""

    kind: Literal["norm", "value"]
    max_norm: float | None = None
    norm_type: float = 2.0
    max_value: float | None = None

    def describe(self) -> str:
        """``norm ≤ 1 (L2)`` or ``values to ±0.5``: what the summary and reprs print."""
        if self.kind == "norm":
            return f"norm ≤ {self.max_norm:g} (L{self.norm_type:g})"
        return f"values to ±{self.max_value:g}"

    def apply(self, model: nn.Module) -> float | None:
        """Clip ``model``'s gradients in place; the total norm before clipping for norm clipping."""
        params = [p for p in model.parameters() if p.grad is not None]
        if self.kind == "norm" and self.max_norm is not None:
            # clip_grad_norm_ in two steps, so that FSDP's sharded gradients (DTensors) get the norm of the
            # whole gradient: their partial norms are reduced across ranks by full_tensor().
            total = torch.nn.utils.get_total_norm([p.grad for p in params], norm_type=self.norm_type)
            if is_sharded(total):
                total = total.full_tensor()  # type: ignore[attr-defined]
            torch.nn.utils.clip_grads_with_norm_(params, self.max_norm, total)
            return float(total)
        if self.max_value is not None:
            torch.nn.utils.clip_grad_value_(params, self.max_value)
        return None


Bucket = tuple[str, list[str], dict[str, Any]]  # label, parameter names, param-group options


NO_DECAY_NAMES = ("bias", "norm", "1d", "embedding")


def is_norm_layer(module: nn.Module) -> bool:
    """torch's normalisation layers and their subclasses (registered ones included), and any class
    named ``...Norm`` (a hand-written ``RMSNorm``, ``LlamaRMSNorm``, timm's ``LayerNorm2d``)."""
    return isinstance(module, NORM_LAYERS) or type(module).__name__.endswith("Norm")


def _owned(model: nn.Module, kinds: Any, canonical: dict[int, str]) -> set[str]:
    """Names (as the optimizer lists them) of the direct parameters of modules ``kinds`` accepts."""
    return {canonical[id(p)] for m in model.modules() if kinds(m) for p in m.parameters(recurse=False)}


def no_decay_names(model: nn.Module, entry: str, names: list[str]) -> list[str] | None:
    """The parameters of ``names`` that the keyword ``entry`` selects; None when it is no keyword.

    ``bias``: names ending in ``bias`` (``in_proj_bias`` too); ``norm``: parameters of
    normalisation layers (``is_norm_layer``); ``1d``: fewer than two dimensions (timm's rule);
    ``embedding``: parameters of ``nn.Embedding`` / ``nn.EmbeddingBag`` layers and subclasses.
    A tied tensor is selected when any of the modules sharing it is.
    """
    params = dict(model.named_parameters())
    canonical = {id(p): n for n, p in params.items()}
    if entry == "bias":
        found = {n for n in names if n.endswith("bias")}
    elif entry == "norm":
        found = _owned(model, is_norm_layer, canonical)
    elif entry == "embedding":
        found = _owned(model, lambda m: isinstance(m, (nn.Embedding, nn.EmbeddingBag)), canonical)
    elif entry == "1d":
        found = {n for n in names if n in params and params[n].dim() < 2}
    else:
        return None
    return [n for n in names if n in found]


def split_no_decay(
    model: nn.Module,
    entries: list[str],
    buckets: list[Bucket],
    base_wd: float,
    source: Any,
    problems: ProblemList,
) -> list[Bucket]:
    """THE no-decay rule, in one place: split each bucket into decayed and no-decay parts.

    Entries are the keywords of ``no_decay_names`` or parameter patterns. A bucket with
    non-zero weight decay becomes its other parameters, then ``<label> (no_decay)`` with
    ``weight_decay: 0``; empty parts are dropped.
    """
    names = [n for _, members, _ in buckets for n in members]
    chosen: set[str] = set()
    for j, entry in enumerate(entries):
        keyword = no_decay_names(model, entry, names)
        if keyword is not None:
            chosen |= set(keyword)
            continue
        hits = select(entry, names)
        if not hits:
            pool = model_names(model)
            message, hint = no_match(entry, pool)
            close = did_you_mean(entry, NO_DECAY_NAMES)
            message = f"no_decay entry {entry!r} is not bias, norm, 1d, embedding or a matching pattern: {message}"
            problems.add(make_problem(source, ("optimizer", "no_decay", j), message, close or hint))
        chosen |= set(hits)
    out: list[Bucket] = []
    for label, members, opts in buckets:
        if not chosen or not opts.get("weight_decay", base_wd):
            out.append((label, members, opts))
            continue
        out.append((label, [n for n in members if n not in chosen], opts))
        zero = {**opts, "weight_decay": 0.0}
        out.append((f"{label} (no_decay)", [n for n in members if n in chosen], zero))
    return [bucket for bucket in out if bucket[1]]


def _clip(spec: OptimizerSpec) -> GradClip | None:
    clip = spec.clip_grad
    if clip is None:
        return None
    if clip.max_norm is not None:
        norm_type = 2.0 if clip.norm_type is None else float(clip.norm_type)
        return GradClip("norm", max_norm=float(clip.max_norm), norm_type=norm_type)
    return GradClip("value", max_value=clip.max_value)


def resolve_optimizer(
    spec: OptimizerSpec, source: Any, problems: ProblemList
) -> tuple[type[torch.optim.Optimizer], dict[str, Any], list[dict[str, Any]]] | None:
    """The optimizer class, its checked keyword arguments and each group's (no model needed)."""
    cls = look_up(optimizer_classes(), spec.type, "optimizer", EXPECTED, ("optimizer", "type"), source, problems)
    if cls is None:
        return None
    given = dict(spec.extras)
    for key in ("lr", "weight_decay"):
        if getattr(spec, key) is not None:
            given[key] = getattr(spec, key)
    what = f"optimizer {spec.type}"
    kwargs = check_kwargs(
        cls, given, owner=spec.type, what=what, path=("optimizer",), source=source, problems=problems, skip=["params"]
    )
    ok = kwargs is not None
    if spec.no_decay and "weight_decay" not in signature_params(cls, ["params"]):
        message = f"no_decay needs an optimizer with weight decay; {spec.type} takes no weight_decay"
        problems.add(make_problem(source, ("optimizer", "no_decay"), message, "remove no_decay"))
        ok = False
    group_opts: list[dict[str, Any]] = []
    for i, group in enumerate(spec.groups or []):
        path: SpecPath = ("optimizer", "groups", i)
        skip = ["params", "lr", "weight_decay"]
        opts = check_kwargs(
            cls,
            group.extras,
            owner=spec.type,
            what=what,
            path=path,
            source=source,
            problems=problems,
            skip=skip,
            require=False,
        )
        ok = ok and opts is not None
        group_opts.append(opts or {})
    return (cls, kwargs, group_opts) if ok and kwargs is not None else None


@dataclass
class OptimizerPlan:
    """The optimizer resolved against a model's parameter names: class, arguments, groups."""

    type_name: str
    cls: type[torch.optim.Optimizer]
    kwargs: dict[str, Any]
    buckets: list[Bucket]  # one per param group: label, parameter names, options
    clip: GradClip | None

    @property
    def group_of(self) -> dict[str, int]:
        """Trainable parameter name -> index of its param group."""
        return {name: i for i, (_, members, _) in enumerate(self.buckets) for name in members}

    @property
    def labels(self) -> list[str]:
        return [label for label, _, _ in self.buckets]


def plan_optimizer(
    model: nn.Module, spec: OptimizerSpec | None, frozen: set[str], source: Any, problems: ProblemList
) -> OptimizerPlan | None:
    """Resolve the optimizer section against ``model``'s parameter names, adding problems instead of
    raising; ``None`` without an optimizer or after a problem. Nothing is constructed."""
    if spec is None:
        return None
    before = len(problems.errors)
    resolved = resolve_optimizer(spec, source, problems)
    params = dict(model.named_parameters())
    names = list(params)
    trainable = [n for n in names if n not in frozen and params[n].requires_grad]
    live = set(trainable)
    if not trainable:
        message = f"the optimizer has nothing to train: all {len(names)} parameters are frozen"
        hint = "remove some freeze: entries or the optimizer"
        problems.add(make_problem(source, ("optimizer",), message, hint))
        return None
    if resolved is None:
        return None
    cls, kwargs, group_opts = resolved
    sig = signature_params(cls, ["params"])
    base_lr = kwargs.get("lr", sig["lr"].default if "lr" in sig else None)
    has_wd = "weight_decay" in sig
    base_wd = kwargs.get("weight_decay", sig["weight_decay"].default if has_wd else 0.0)

    claimed: dict[str, int] = {}
    buckets: list[Bucket] = []
    for i, group in enumerate(spec.groups or []):
        path: SpecPath = ("optimizer", "groups", i)
        patterns = as_list(group.params)
        if not patterns:
            problems.add(make_problem(source, (*path, "params"), "params is an empty list", "give a pattern"))
            continue
        selected: set[str] = set()
        for j, pattern in enumerate(patterns):
            hits = select(pattern, names)
            if not hits:
                message, hint = no_match(pattern, model_names(model), "parameter")
                where = (*path, "params", j) if isinstance(group.params, list) else (*path, "params")
                problems.add(make_problem(source, where, message, hint))
            selected |= set(hits)
        if not selected:
            continue
        mine_all = [n for n in names if n in selected and n in live]
        if not mine_all:
            message = f"group {i} matches only frozen parameters: {name_list(sorted(selected), 5)}"
            hint = "remove the group or the freeze entry"
            problems.add(make_problem(source, (*path, "params"), message, hint))
            continue
        mine = [n for n in mine_all if n not in claimed]
        if not mine:
            owners = " and ".join(f"group {g}" for g in sorted({claimed[n] for n in mine_all}))
            message = (
                f"group {i} matches only parameters already claimed by {owners} (first match wins): "
                f"{name_list(mine_all, 5)}"
            )
            hint = f"remove group {i}, move it before {owners}, or narrow the earlier group's params"
            problems.add(make_problem(source, (*path, "params"), message, hint))
            continue
        claimed.update(dict.fromkeys(mine, i))
        opts = dict(group_opts[i])
        if base_lr is None and (group.lr_mult is not None):
            problems.add(make_problem(source, (*path, "lr_mult"), f"{spec.type} has no lr to multiply"))
            continue
        if not has_wd and (group.weight_decay is not None or group.decay_mult is not None):
            key = "weight_decay" if group.weight_decay is not None else "decay_mult"
            message = f"{spec.type} takes no weight_decay"
            problems.add(make_problem(source, (*path, key), message, f"remove {key}"))
            continue
        lr = group.lr if group.lr is not None else base_lr
        if lr is not None:
            opts["lr"] = float(lr) * (1.0 if group.lr_mult is None else group.lr_mult)
        if has_wd:
            wd = group.weight_decay if group.weight_decay is not None else base_wd
            opts["weight_decay"] = float(wd) * (1.0 if group.decay_mult is None else group.decay_mult)
        buckets.append((f"groups.{i}", mine, opts))
    rest = [n for n in trainable if n not in claimed]
    if rest:
        buckets.append(("default", rest, {}))

    if spec.no_decay and has_wd:
        buckets = split_no_decay(model, spec.no_decay, buckets, base_wd, source, problems)
    if len(problems.errors) > before:
        return None
    return OptimizerPlan(spec.type, cls, kwargs, buckets, _clip(spec))


# What torch optimizers raise for settings they refuse (``lr=-1``: ValueError; a wrong type: TypeError).
OPTIMIZER_ERRORS = (ValueError, TypeError, RuntimeError, KeyError)


def _construct_on_meta(
    cls: type[torch.optim.Optimizer], param_groups: list[dict[str, Any]], kwargs: dict[str, Any]
) -> torch.optim.Optimizer:
    """``cls(param_groups, **kwargs)`` over meta parameters (``read``'s check, a meta build), without
    importing ``torch._dynamo``: ``Optimizer.add_param_group`` is wrapped in torch's lazy
    ``_disable_dynamo``, whose first call imports all of dynamo (about 1.5 s) for a guard that only
    matters under ``torch.compile``. The constructor runs the undecorated function instead; the
    optimizer returned has no instance override, so its later ``add_param_group`` calls are torch's own."""
    plain = getattr(torch.optim.Optimizer.add_param_group, "__wrapped__", None)
    if plain is None or getattr(cls, "add_param_group", None) is not torch.optim.Optimizer.add_param_group:
        return cls(param_groups, **kwargs)  # a torch without the wrapper, or a class with its own method
    optimizer = cls.__new__(cls)
    optimizer.add_param_group = types.MethodType(plain, optimizer)  # type: ignore[method-assign]
    try:
        optimizer.__init__(param_groups, **kwargs)  # type: ignore[misc]
    finally:
        del optimizer.add_param_group
    return optimizer


def make_optimizer(
    model: nn.Module, plan: OptimizerPlan, source: Any, problems: ProblemList
) -> torch.optim.Optimizer | None:
    """Construct the planned optimizer over ``model``'s parameters (found by name); ``None`` after a problem."""
    # Every name, tied ones too: a parameter tied after the plan was made (a checkpoint's ``head.weight =
    # embed.weight``) is found under either name and placed once, in the group of its first name.
    params = dict(model.named_parameters(remove_duplicate=False))
    placed: set[int] = set()
    param_groups = []
    for _, members, opts in plan.buckets:
        group = []
        for name in members:
            if name in params and id(params[name]) not in placed:
                placed.add(id(params[name]))
                group.append(params[name])
        param_groups.append({"params": group, **opts})
    try:
        if all(p.is_meta for p in params.values()):
            return _construct_on_meta(plan.cls, param_groups, plan.kwargs)
        return plan.cls(param_groups, **plan.kwargs)
    except OPTIMIZER_ERRORS as err:
        message = f"{plan.type_name} rejected its settings: {first_line(err)}"
        problems.add(make_problem(source, ("optimizer",), message))
        return None


def run_optimizer(
    model: nn.Module, spec: OptimizerSpec | None, frozen: set[str], source: Any, problems: ProblemList
) -> tuple[torch.optim.Optimizer | None, dict[str, int], GradClip | None, list[str]]:
    """Plan and build the optimizer, adding problems instead of raising. Returns (opt, group_of, clip, labels)."""
    plan = plan_optimizer(model, spec, frozen, source, problems)
    optimizer = make_optimizer(model, plan, source, problems) if plan is not None else None
    if plan is None or optimizer is None:
        return None, {}, None, []
    return optimizer, plan.group_of, plan.clip, plan.labels


def build_optimizer(
    model: nn.Module, spec: OptimizerSpec | None, frozen: set[str], source: Any
) -> tuple[torch.optim.Optimizer | None, dict[str, int], GradClip | None]:
    """Build the optimizer; returns (optimizer, group_of, clip). Raises ``SpecError`` on bad input."""
    problems = ProblemList()
    optimizer, group_of, clip, _ = run_optimizer(model, spec, frozen, source, problems)
    if problems.errors:
        raise SpecError(problems.errors)
    return optimizer, group_of, clip
