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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

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
