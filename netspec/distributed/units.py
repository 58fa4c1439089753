"""FSDP units: which modules ``distributed.shard`` selects, and the checks made before sharding.

In: a model (built on meta, so nothing is allocated), the ``DistributedSpec`` and the spec's
``Source``. Out: the unit module names, bottom-up (deepest first; the root is always the
last unit), or problems: a ``shard`` pattern that matches no module (with the closest
names), a tied parameter whose names fall in different units, a mixed-precision dtype the
device cannot all-gather or reduce in, a unit without a forward of its own (a ModuleList or
ModuleDict, which ``fully_shard`` refuses). ``netspec plan`` uses the same functions, so a spec
that plans builds.

A pattern is matched against whole module names (``layers.*`` selects ``layers.0``); each
match is one unit, and a module inside a match of the *same* pattern is not another unit (so
``layers.*`` gives one unit per layer, not one per Linear inside it). Several patterns may
nest units (``["layers.*", "layers.*.mlp"]``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ProblemList
from ..frontend.distributed_models import DistributedSpec
from ..io.checkpoint import tied_groups
from ..training.kwargs import make_problem
from ..training.patterns import dotted_prefixes, is_glob, no_match

DTYPE_NAMES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def _matches(pattern: str, name: str) -> bool:
    from fnmatch import fnmatchcase

    return fnmatchcase(name, pattern) if is_glob(pattern) else name == pattern


def unit_names(model: nn.Module, spec: DistributedSpec, source: Any, problems: ProblemList) -> list[str]:
    """Module names that become FSDP units, deepest first, ending with the root ``""``."""
    modules = [name for name, _ in model.named_modules() if name]
    chosen: list[str] = []
    for i, pattern in enumerate(spec.shard):
        hits = [n for n in modules if _matches(pattern, n)]
        if not hits:
            message, hint = no_match(pattern, modules, "module")
            problems.add(make_problem(source, ("distributed", "shard", i), message, hint))
            continue
        found = set(hits)
        outermost = [n for n in hits if not any(prefix in found for prefix in dotted_prefixes(n)[:-1])]
        _check_forward(model, outermost, source, ("distributed", "shard", i), problems)
        chosen += [n for n in outermost if n not in chosen]
    _check_forward(model, [""], source, ("model", "type") if _has(source, "model") else ("distributed",), problems)
    depth = {name: name.count(".") for name in chosen}
    order = {name: i for i, name in enumerate(modules)}
    return [*sorted(chosen, key=lambda n: (-depth[n], order[n])), ""]


def _check_forward(
    model: nn.Module, names: list[str], source: Any, path: tuple[str | int, ...], problems: ProblemList
) -> None:
    """``fully_shard`` refuses a module without a forward (a ModuleList, a ModuleDict): say so at the spec."""
    bare = [n for n in names if type(model.get_submodule(n) if n else model).forward is nn.Module.forward]
    if not bare:
        return
    what = ", ".join(repr(n) if n else "the root model" for n in bare[:3]) + (" ..." if len(bare) > 3 else "")
    kind = type(model.get_submodule(bare[0]) if bare[0] else model).__name__
    message = f"FSDP cannot shard {what}: a {kind} has no forward of its own, and fully_shard needs one"
    hint = (
        "make the model a Graph (or Sequential) that calls its layers"
        if bare == [""]
        else f"shard its elements instead ('{bare[0]}.*' rather than '{bare[0]}')"
    )
    problems.add(make_problem(source, path, message, hint))


def owner_unit(name: str, units: list[str]) -> str:
    """The innermost unit containing the tensor ``name`` (the root ``""`` contains everything)."""
    best = ""
    for unit in units:
        if unit and (name.startswith(unit + ".")) and len(unit) > len(best):
            best = unit
    return best


def check_ties(model: nn.Module, units: list[str], source: Any, problems: ProblemList) -> None:
    """A tied parameter must belong to one unit: FSDP frees a unit's parameters after its use."""
    for names in tied_groups(model):
        owners = {name: owner_unit(name, units) for name in names}
        if len(set(owners.values())) > 1:
            parts = ", ".join(f"{n!r} in unit {owners[n] or '<root>'!r}" for n in names)
            message = f"tied parameters fall in different FSDP units: {parts}"
            common = _common_prefix(names)
            hint = (
                f"shard a module that contains all of them ({common!r}), or leave them to the root unit"
                if common
                else "leave the modules holding them out of shard: so the root unit owns the tensor"
            )
            path: tuple[str | int, ...] = ("tie",) if _has(source, "tie") else ("distributed", "shard")
            problems.add(make_problem(source, path, message, hint))


def _has(source: Any, key: str) -> bool:
    data = getattr(source, "data", None)
    return isinstance(data, dict) and key in data


def _common_prefix(names: list[str]) -> str:
    parts = [n.split(".")[:-1] for n in names]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return ".".join(common)


def check_precision(
    spec: DistributedSpec, device: torch.device, backend: str, source: Any, problems: ProblemList
) -> tuple[torch.dtype | None, torch.dtype | None]:
    """The policy's dtypes, or problems for one the device or backend cannot use (checked before any
    collective runs: gloo aborts the process on a bfloat16 or float16 reduce-scatter)."""
    mp = spec.mixed_precision
    if mp is None:
        return None, None
    out: list[torch.dtype | None] = []
    for key in ("param_dtype", "reduce_dtype"):
        name = getattr(mp, key)
        if name is None:
            out.append(None)
            continue
        dtype = DTYPE_NAMES[name]
        reason = None
        if device.type == "cuda":
            if dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
                reason = f"{torch.cuda.get_device_name(device)} has no bfloat16 support"
        elif "gloo" in backend and dtype in (torch.bfloat16, torch.float16):
            reason = "the gloo backend (CPU) cannot all-gather or reduce-scatter it"
        if reason:
            message = f"mixed_precision.{key} {name} cannot be used on {device} with {backend}: {reason}"
            hint = "use float32 here, or run on GPUs with NCCL (torchrun on a CUDA machine)"
            problems.add(make_problem(source, ("distributed", "mixed_precision", key), message, hint))
        out.append(dtype)
    return out[0], out[1]
