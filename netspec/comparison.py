"""``netspec.diff(a, b)``: what differs between two specs or checkpoints, and what of A loads into B.

In: two specs — each a file path, a dict, a ``netspec.Spec`` or a checkpoint (``.pt``,
``.safetensors``, ...) — the search path for their ``extends``/``imports``, and ``--set`` style
overrides for both sides or for one (a checkpoint's spec takes none). Out: a
``SpecDiff``: the values that differ, each with where A and B wrote it (``file:line``, ``--set``);
the modules added, removed or changed (type or arguments) in B's model relative to A's; parameter
and MAC deltas; and, key by key, which of A's weights (a checkpoint's saved tensors, or the
state_dict A's spec builds) would load into B's model — same key and same shape — so "can I
warm-start B from this run?" has an answer. Models are built on meta tensors only; a
checkpoint's tensors are mapped, never read. ``to_table()`` and ``to_dict()`` render it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from .errors import SpecError, SpecPath, UsageError, format_path
from .figures import Figures, figures
from .frontend.origins import origin, show_file
from .io.checkpoint import inspect_checkpoint, is_checkpoint_path
from .spec import Spec, read

_LISTED = 8  # weight keys listed per category in the table


@dataclass(frozen=True)
class ValueChange:
    path: str
    a: Any
    b: Any
    a_origin: str | None
    b_origin: str | None
    kind: str  # "changed", "added" (only in B) or "removed" (only in A)


@dataclass(frozen=True)
class ModuleChange:
    name: str  # "" is the root
    kind: str  # "added", "removed" or "changed"
    a: str | None  # Type(arguments) in A
    b: str | None


@dataclass
class Side:
    """One side of a diff: its label, validated spec, and the weights it holds or builds (key -> shape)."""

    label: str
    spec: Spec
    weights: dict[str, tuple[int, ...]]
    checkpoint: bool


@dataclass
class SpecDiff:
    a: str
    b: str
    values: list[ValueChange] = field(default_factory=list)
    modules: list[ModuleChange] = field(default_factory=list)
    figures_a: Figures | None = None
    figures_b: Figures | None = None
    loadable: list[str] = field(default_factory=list)  # A's keys B can load (same key, same shape)
    shape_mismatch: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    only_in_a: list[str] = field(default_factory=list)  # A's keys B's model has not
    only_in_b: list[str] = field(default_factory=list)  # B's keys A cannot fill (they keep B's init)

    @property
    def differs(self) -> bool:
        """Whether anything differs: a value, a module, or the weights' keys and shapes."""
        return bool(self.values or self.modules or self.shape_mismatch or self.only_in_a or self.only_in_b)

    def __bool__(self) -> bool:
        return self.differs

    def to_dict(self) -> dict[str, Any]:
        fa, fb = self.figures_a, self.figures_b
        return {
            "a": self.a,
            "b": self.b,
            "differs": self.differs,
            "fingerprints": {"a": fa.fingerprint if fa else None, "b": fb.fingerprint if fb else None},
            "values": [vars(v) for v in self.values],
            "modules": [vars(m) for m in self.modules],
            "parameters": _delta(fa.parameters if fa else None, fb.parameters if fb else None),
            "macs": _delta(fa.macs if fa else None, fb.macs if fb else None),
            "weights": {
                "loadable": self.loadable,
                "shape_mismatch": [{"key": k, "a": list(sa), "b": list(sb)} for k, sa, sb in self.shape_mismatch],
                "only_in_a": self.only_in_a,
                "only_in_b": self.only_in_b,
            },
        }

    def to_table(self) -> str:
        out = [f"--- a: {self.a}", f"+++ b: {self.b}"]
        if not self.differs:
            out.append("no differences")
        if self.values:
            out.append("")
            out.append(f"values ({len(self.values)}):")
            rows = [
                (
                    v.path,
                    _shown(v.a) if v.kind != "added" else "(absent)",
                    _shown(v.b) if v.kind != "removed" else "(absent)",
                    v.a_origin or "",
                    v.b_origin or "",
                )
                for v in self.values
            ]
            out.extend(_columns(("path", "a", "b", "a from", "b from"), rows))
        if self.modules:
            out.append("")
            out.append(f"modules ({len(self.modules)}):")
            signs = {"added": "+", "removed": "-", "changed": "~"}
            rows = [(signs[m.kind] + " " + (m.name or "(root)"), m.a or "", m.b or "") for m in self.modules]
            out.extend(_columns(("module", "a", "b"), rows))
        fa, fb = self.figures_a, self.figures_b
        if fa and fb:
            out.append("")
            delta = _signed(fb.parameters - fa.parameters)
            out.append(f"parameters: {_count(fa.parameters)} -> {_count(fb.parameters)} ({delta})")
            if fa.macs is not None and fb.macs is not None:
                out.append(f"MACs/sample: {_count(fa.macs)} -> {_count(fb.macs)} ({_signed(fb.macs - fa.macs)})")
            else:
                out.append("MACs/sample: unknown (a spec without input.shape)")
        total_a = len(self.loadable) + len(self.shape_mismatch) + len(self.only_in_a)
        total_b = len(self.loadable) + len(self.shape_mismatch) + len(self.only_in_b)
        out.append("")
        out.append(
            f"warm start: {len(self.loadable)} of A's {total_a} tensors load into B (same key and shape); "
            f"B has {total_b}"
        )
        listed = [
            ("shape differs", [f"{k} {list(sa)} -> {list(sb)}" for k, sa, sb in self.shape_mismatch]),
            ("only in a", self.only_in_a),
            ("only in b (keep B's initialisation)", self.only_in_b),
        ]
        for label, keys in listed:
            if keys:
                out.append(f"  {label} ({len(keys)}):")
                out.extend(f"    {key}" for key in keys[:_LISTED])
                if len(keys) > _LISTED:
                    out.append(f"    ... and {len(keys) - _LISTED} more (--format json lists them all)")
        return "\n".join(out) + "\n"


def _delta(a: int | None, b: int | None) -> dict[str, int | None]:
    return {"a": a, "b": b, "delta": b - a if a is not None and b is not None else None}


def _count(n: int) -> str:
    return f"{n:,}"


def _signed(n: int) -> str:
    return f"{n:+,}"


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def _columns(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.extend("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    return lines


def _side(
    value: Any,
    search_path: Sequence[str | os.PathLike[str]] | None,
    overrides: Mapping[str, Any] | None,
    side: str,
) -> Side:
    if isinstance(value, Spec):
        spec = read(value, overrides) if overrides else value
        return Side(show_file(value.source.filename), spec, _state_shapes(spec), False)
    if isinstance(value, (str, os.PathLike)) and is_checkpoint_path(value):
        if overrides:  # the weights are the file's: a changed spec beside them would compare nothing real
            raise UsageError(f"overrides for {side} apply to a spec, but {side} is a checkpoint ({os.fspath(value)})")
        summary = inspect_checkpoint(value)
        try:
            spec = read(summary.spec)
        except SpecError as err:
            raise SpecError([_embedded(p, summary.path) for p in err.problems]) from None
        spec.source.filename = summary.path
        return Side(show_file(summary.path), spec, dict(summary.weights), True)
    if isinstance(value, Mapping):
        spec = read(value, overrides, search_path=search_path)
        return Side("<dict>", spec, _state_shapes(spec), False)
    spec = read(value, overrides, search_path=search_path)
    return Side(show_file(os.fspath(value)), spec, _state_shapes(spec), False)


def _embedded(problem: Any, path: str) -> Any:
    from dataclasses import replace

    return replace(problem, message=problem.message + f" (in the spec embedded in {path})")


def _state_shapes(spec: Spec) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in spec.inferred.meta_model.state_dict().items()}


def _describe(module: nn.Module) -> str:
    return f"{type(module).__name__}({module.extra_repr()})"


def _value_changes(a: Side, b: Side) -> list[ValueChange]:
    """Differing values, walking both specs together: mappings key by key, equal-length lists item by
    item; where the two differ in kind (``ReLU`` against ``{type: GELU}``), the whole value is one change."""
    changes: list[ValueChange] = []

    def where(side: Side, path: SpecPath) -> str | None:
        return origin(side.spec.source, path) or (side.label if side.checkpoint else None)

    def walk(va: Any, vb: Any, path: SpecPath) -> None:
        if isinstance(va, dict) and isinstance(vb, dict):
            for key in [*va, *(k for k in vb if k not in va)]:
                here = (*path, key)
                if key not in vb:
                    changes.append(ValueChange(format_path(here), va[key], None, where(a, here), None, "removed"))
                elif key not in va:
                    changes.append(ValueChange(format_path(here), None, vb[key], None, where(b, here), "added"))
                else:
                    walk(va[key], vb[key], here)
        elif isinstance(va, list) and isinstance(vb, list) and len(va) == len(vb) and va != vb:
            if all(not isinstance(v, (dict, list)) for v in (*va, *vb)):  # a shape: one value
                changes.append(ValueChange(format_path(path), va, vb, where(a, path), where(b, path), "changed"))
            else:
                for i, (ia, ib) in enumerate(zip(va, vb, strict=True)):
                    walk(ia, ib, (*path, i))
        elif type(va) is not type(vb) or va != vb:
            changes.append(ValueChange(format_path(path), va, vb, where(a, path), where(b, path), "changed"))

    walk(a.spec.source.data, b.spec.source.data, ())
    return changes


def _module_changes(a: Side, b: Side) -> list[ModuleChange]:
    left = dict(a.spec.inferred.meta_model.named_modules())
    right = dict(b.spec.inferred.meta_model.named_modules())
    out = []
    for name, module in right.items():
        if name not in left:
            if name.rpartition(".")[0] in right and name.rpartition(".")[0] not in left and name:
                continue  # inside an added module: the parent's row says it
            out.append(ModuleChange(name, "added", None, _describe(module)))
        elif _describe(left[name]) != _describe(module):
            out.append(ModuleChange(name, "changed", _describe(left[name]), _describe(module)))
    for name, module in left.items():
        if name not in right:
            parent = name.rpartition(".")[0]
            if name and parent in left and parent not in right:
                continue
            out.append(ModuleChange(name, "removed", _describe(module), None))
    return out


def diff(
    a: str | os.PathLike[str] | Mapping[str, Any] | Spec,
    b: str | os.PathLike[str] | Mapping[str, Any] | Spec,
    *,
    search_path: Sequence[str | os.PathLike[str]] | None = None,
    overrides: Mapping[str, Any] | None = None,
    overrides_a: Mapping[str, Any] | None = None,
    overrides_b: Mapping[str, Any] | None = None,
) -> SpecDiff:
    """Compare ``a`` and ``b`` (specs or checkpoints); see the module docstring. Nothing is allocated.

    ``overrides`` (``--set``) apply to both sides, then ``overrides_a`` / ``overrides_b`` to one:
    ``diff(s, s, overrides_b={"vars.width": 128})`` shows what that override changes."""
    left = _side(a, search_path, {**(overrides or {}), **(overrides_a or {})}, "A")
    right = _side(b, search_path, {**(overrides or {}), **(overrides_b or {})}, "B")
    result = SpecDiff(left.label, right.label)
    result.values = _value_changes(left, right)
    result.modules = _module_changes(left, right)
    result.figures_a, result.figures_b = figures(left.spec), figures(right.spec)
    for key, shape in right.weights.items():  # in B's order: the model being warm-started
        if key not in left.weights:
            result.only_in_b.append(key)
        elif left.weights[key] != shape:
            result.shape_mismatch.append((key, left.weights[key], shape))
        else:
            result.loadable.append(key)
    result.only_in_a = [k for k in left.weights if k not in right.weights]
    return result


__all__ = ["ModuleChange", "SpecDiff", "ValueChange", "diff"]
