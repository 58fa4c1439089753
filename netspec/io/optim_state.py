"""Saved optimizer and scheduler state checked against freshly built ones, before anything is loaded.

In: the state_dict a checkpoint holds for an optimizer (or scheduler), the optimizer (scheduler)
the embedded spec just built, the checkpoint's path. Out: nothing when the saved state has the
structure the fresh one has — the same keys, the same number of parameter groups and of
parameters per group, the same type for every hyperparameter (a number where a number is, never
a string ``lr``), per-parameter state keyed by saved parameter indices, whose tensors are
floating point and sized like their parameter (or scalars, or the factored shapes Adafactor
keeps) — and otherwise a ``CheckpointError`` naming the field (``optimizer.param_groups.0.lr``).

Torch's own ``load_state_dict`` accepts most of these and the first ``step()`` then fails, or
trains with nonsense. A group key the file lacks (a newer torch added it) is filled from the
freshly built group after loading (``fill_missing_group_keys``).

Loading restores the saved hyperparameters (``lr``, ``momentum``, ``weight_decay`` ...), as
``Optimizer.load_state_dict`` and DCP's ``set_optimizer_state_dict`` both do. Where the spec
resumed with (its overrides, or a var its ``optimizer:`` section reads) sets a value differently
from the spec the checkpoint embeds, ``changed_hyperparameters`` names the param-group keys and
``apply_spec_hyperparameters`` puts the freshly built values back, returning what changed, for
the warning ``hyperparameter_note`` writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..frontend import exprs

# Optimizers whose per-parameter state is not shaped like the parameter (LBFGS keeps flat histories).
_FREE_FORM_STATE = frozenset({"LBFGS"})
# Optimizers keeping row/column statistics: parameter-shaped with some dims 1 (Adafactor's row_var, col_var).
_FACTORED_STATE = frozenset({"Adafactor"})


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    return f"{type(value).__name__} {value!r}" if isinstance(value, (bool, int, float)) else type(value).__name__


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Checker:
    def __init__(self, file: Path, what: str) -> None:
        self.file, self.what = file, what

    def fail(self, path: Sequence[str | int], message: str) -> None:
        field = ".".join([self.what, *(str(p) for p in path)])
        raise CheckpointError(f"{self.file}: cannot resume the {self.what}: {field} {message}")

    def same(self, saved: Any, fresh: Any, path: tuple[str | int, ...], *, missing_ok: bool = False) -> None:
        """``saved`` has ``fresh``'s structure and types (values may differ)."""
        if isinstance(fresh, Mapping):
            if not isinstance(saved, Mapping):
                self.fail(path, f"should be a dict, found {_kind(saved)}")
            unknown = [k for k in saved if k not in fresh]
            if unknown:
                self.fail(
                    path, f"has unknown key(s) {', '.join(map(repr, unknown[:5]))}; expected {sorted(fresh, key=str)}"
                )
            missing = [k for k in fresh if k not in saved]
            if missing and not missing_ok:
                self.fail(path, f"lacks key(s) {', '.join(map(repr, missing[:5]))}")
            for key in saved:
                self.same(saved[key], fresh[key], (*path, key))
        elif isinstance(fresh, (list, tuple)):
            if not isinstance(saved, (list, tuple)):
                self.fail(path, f"should be a list of {len(fresh)}, found {_kind(saved)}")
            if len(saved) != len(fresh):
                self.fail(path, f"has {len(saved)} entries; the optimizer built from the spec has {len(fresh)}")
            for k, (s, f) in enumerate(zip(saved, fresh, strict=True)):
                self.same(s, f, (*path, k))
        elif isinstance(fresh, bool):
            if not isinstance(saved, bool):
                self.fail(path, f"should be true or false, found {_kind(saved)}")
        elif _number(fresh):
            if not _number(saved):
                self.fail(path, f"should be a number, found {_kind(saved)}")
        elif isinstance(fresh, str):
            if not isinstance(saved, str):
                self.fail(path, f"should be a string, found {_kind(saved)}")
        elif isinstance(fresh, torch.Tensor):
            if not isinstance(saved, torch.Tensor):
                self.fail(path, f"should be {_kind(fresh)}, found {_kind(saved)}")
            if saved.shape != fresh.shape or saved.dtype != fresh.dtype:
                self.fail(path, f"should be {_kind(fresh)}, found {_kind(saved)}")
        elif fresh is None and not (saved is None or isinstance(saved, (bool, int, float, str))):
            self.fail(path, f"should be a plain value, found {_kind(saved)}")
        # Anything else (a callable a scheduler keeps) is not part of a state_dict torch saves.

    def param_state(
        self, entry: Any, param: torch.Tensor, path: tuple[str | int, ...], free_form: bool, factored: bool
    ) -> None:
        if not isinstance(entry, Mapping) or not all(isinstance(k, str) for k in entry):
            self.fail(path, f"should be a dict of named values, found {_kind(entry)}")
        for key, value in entry.items():
            where = (*path, key)
            if isinstance(value, torch.Tensor):
                if free_form:
                    continue
                if value.dtype == torch.bool:
                    self.fail(where, f"should be a numeric tensor, found {_kind(value)}")
                if value.numel() <= 1 and value.dim() <= 1:
                    continue  # a step count, a scalar accumulator
                if not (value.is_floating_point() or value.is_complex()):
                    self.fail(where, f"should be a floating-point tensor, found {_kind(value)}")
                fits = value.shape == param.shape or (
                    factored
                    and value.dim() == param.dim()
                    and all(v in (p, 1) for v, p in zip(value.shape, param.shape, strict=True))
                )
                if not fits:
                    self.fail(where, f"is {_kind(value)}; its parameter has shape {list(param.shape)}")
            elif (
                value is None
                or _number(value)
                or isinstance(value, bool)
                or (free_form and isinstance(value, (list, tuple)))
            ):
                continue
            else:
                self.fail(where, f"should be a tensor or a number, found {_kind(value)}")


def check_optimizer_state(saved: Any, optimizer: torch.optim.Optimizer, file: Path) -> None:
    """Raise ``CheckpointError`` naming the first field of ``saved`` that ``optimizer`` could not resume from."""
    check = _Checker(file, "optimizer")
    fresh = optimizer.state_dict()
    if not isinstance(saved, Mapping):
        check.fail((), f"should be a dict with 'state' and 'param_groups', found {_kind(saved)}")
    check.same({k: None for k in saved}, {k: None for k in fresh}, ())
    groups = saved["param_groups"]
    if not isinstance(groups, (list, tuple)):
        check.fail(("param_groups",), f"should be a list, found {_kind(groups)}")
    if len(groups) != len(fresh["param_groups"]):
        check.fail(
            ("param_groups",),
            f"has {len(groups)} group(s); the optimizer built from the spec has {len(fresh['param_groups'])}",
        )
    params: dict[int, torch.Tensor] = {}
    for k, (group, new, live) in enumerate(zip(groups, fresh["param_groups"], optimizer.param_groups, strict=True)):
        path: tuple[str | int, ...] = ("param_groups", k)
        if not isinstance(group, Mapping):
            check.fail(path, f"should be a dict, found {_kind(group)}")
        ids = group.get("params")
        if not isinstance(ids, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            check.fail((*path, "params"), f"should be a list of parameter indices, found {_kind(ids)}")
        if len(ids) != len(live["params"]):
            check.fail(
                (*path, "params"),
                f"has {len(ids)} parameter(s); group {k} of the optimizer built from the spec has "
                f"{len(live['params'])}",
            )
        check.same(
            {key: v for key, v in group.items() if key != "params"},
            {key: v for key, v in new.items() if key != "params"},
            path,
            missing_ok=True,
        )
        for i, param in zip(ids, live["params"], strict=True):
            if i in params:
                check.fail((*path, "params"), f"lists parameter index {i} twice")
            params[i] = param
    state = saved["state"]
    if not isinstance(state, Mapping):
        check.fail(("state",), f"should be a dict, found {_kind(state)}")
    free_form = type(optimizer).__name__ in _FREE_FORM_STATE
    for i, entry in state.items():
        if isinstance(i, bool) or not isinstance(i, int) or i not in params:
            check.fail(("state",), f"has an entry for {i!r}, which no parameter group lists")
        check.param_state(entry, params[i], ("state", i), free_form, type(optimizer).__name__ in _FACTORED_STATE)


def fill_missing_group_keys(optimizer: torch.optim.Optimizer, fresh_groups: Sequence[Mapping[str, Any]]) -> None:
    """Give each loaded group the keys the file lacked, from the freshly built group."""
    for group, fresh in zip(optimizer.param_groups, fresh_groups, strict=False):
        for key, value in fresh.items():
            group.setdefault(key, value)


def check_scheduler_state(saved: Any, scheduler: Any, file: Path) -> None:
    """Raise ``CheckpointError`` naming the first field of ``saved`` that ``scheduler`` could not resume from."""
    _Checker(file, "scheduler").same(saved, scheduler.state_dict(), ())


# Keys of the ``optimizer:`` section that are netspec's, and the param-group keys they decide.
_SECTION_KEYS = {"no_decay": ("weight_decay",), "lr_mult": ("lr",), "clip_grad": (), "params": ("*",), "type": ("*",)}


def _substituted(spec: Mapping[str, Any] | None) -> Any:
    """The spec's ``optimizer:`` section with its ``${...}`` evaluated (the raw section if that fails:
    it was validated when it was saved, and the current one just now)."""
    if not isinstance(spec, Mapping):
        return None
    section = spec.get("optimizer")
    if not exprs.has_refs(section):
        return section
    try:
        return exprs.substitute(section, exprs.resolve_vars(spec.get("vars") or {}))
    except exprs.ExprError:
        return section


def _changed_keys(saved: Mapping[str, Any], current: Mapping[str, Any]) -> set[str]:
    names: set[str] = set()
    for key in set(saved) | set(current):
        if saved.get(key) != current.get(key):
            names.update(_SECTION_KEYS.get(key, (key,)))
    return names


def changed_hyperparameters(saved_spec: Mapping[str, Any] | None, spec: Mapping[str, Any] | None) -> set[str]:
    """The param-group keys whose value the ``optimizer:`` section of ``spec`` (the spec resumed with,
    overrides applied) sets differently from ``saved_spec`` (the one the checkpoint embeds). ``"*"``:
    every key (a section added, removed, of another type, or groups selecting other parameters)."""
    before, after = _substituted(saved_spec), _substituted(spec)
    if before == after:
        return set()
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return {"*"}
    names = _changed_keys(
        {k: v for k, v in before.items() if k != "groups"}, {k: v for k, v in after.items() if k != "groups"}
    )
    old_groups, new_groups = before.get("groups") or [], after.get("groups") or []
    if not isinstance(old_groups, list) or not isinstance(new_groups, list) or len(old_groups) != len(new_groups):
        return {"*"}
    for old, new in zip(old_groups, new_groups, strict=True):
        if not isinstance(old, Mapping) or not isinstance(new, Mapping):
            return {"*"}
        names |= _changed_keys(old, new)
    return names


def apply_spec_hyperparameters(
    optimizer: torch.optim.Optimizer, fresh_groups: Sequence[Mapping[str, Any]], names: set[str]
) -> dict[str, list[tuple[Any, Any]]]:
    """After a resume, give each param group the freshly built value of every key in ``names``
    (``changed_hyperparameters``): what the spec says now wins over what the checkpoint restored.
    Returns, per key that changed a value, each group's ``(restored, now)`` pair."""
    report: dict[str, list[tuple[Any, Any]]] = {}
    for group, fresh in zip(optimizer.param_groups, fresh_groups, strict=False):
        keys = [k for k in fresh if k != "params"] if "*" in names else [k for k in names if k in fresh]
        for key in keys:
            before = group.get(key)
            group[key] = fresh[key]
            report.setdefault(key, []).append((before, fresh[key]))
    return {k: pairs for k, pairs in report.items() if any(a != b for a, b in pairs)}


def _shown(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


def hyperparameter_note(report: Mapping[str, list[tuple[Any, Any]]]) -> str | None:
    """One line saying which optimizer settings the spec changed on resume (None when none did)."""
    if not report:
        return None
    parts = []
    for key, pairs in report.items():
        before = sorted({_shown(a) for a, _ in pairs})
        after = sorted({_shown(b) for _, b in pairs})
        parts.append(f"{key} {'/'.join(after)} (the checkpoint had {'/'.join(before)})")
    return "resumed with the spec's optimizer settings where they changed since the save: " + "; ".join(parts)
