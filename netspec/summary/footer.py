"""The training lines under the summary table: scheduler, clipping, loss, eval modules, averaging, ties.

In: a ``Built``. Out: (label, text) lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..io.checkpoint import tied_groups

if TYPE_CHECKING:
    from ..api import Built


def training_footer(built: Built) -> list[tuple[str, str]]:
    """What the table does not show about training: scheduler and warm-up, clipping, loss, modules kept in
    eval mode, the weight average, tied parameters — each a (label, text) line."""
    from ..training.explain import compress_names

    doc = built.spec.document
    lines: list[tuple[str, str]] = []
    setup = built.training
    if doc.scheduler is not None and built.scheduler is not None:
        sched = doc.scheduler
        text = _call_text(sched.type or "warm-up only", _extra_args(sched, ("type", "interval", "warmup")))
        text += f", stepped per {sched.interval}"
        if sched.warmup is not None:
            text += f"; warm-up {sched.warmup.steps} {sched.interval}s from {sched.warmup.start_factor:g}× lr"
        lines.append(("Scheduler", text))
    if setup is not None and setup.clip is not None:
        lines.append(("Gradient clipping", setup.clip.describe()))
    if built.loss is not None and doc.loss is not None:
        lines.append(("Loss", _call_text(type(built.loss).__name__, _extra_args(doc.loss, ("type",)))))
    if setup is not None and setup.eval_modules:
        modules = [n for n, _ in built.model.named_modules() if n]
        lines.append(("Eval mode", ", ".join(compress_names(sorted(setup.eval_modules), modules))))
    if doc.average is not None:
        lines.append(("Averaging", _call_text(doc.average.type, _extra_args(doc.average, ("type",)))))
    ties = tied_groups(built.model)
    if ties:
        lines.append(("Tied", "; ".join(" = ".join(names) for names in ties)))
    return lines


def _extra_args(section: BaseModel | str, skip: tuple[str, ...]) -> dict[str, Any]:
    """A pydantic section's user-written arguments (its declared fields that are set, plus extra keys);
    none for a bare type name (``loss: CrossEntropyLoss``)."""
    if isinstance(section, str):
        return {}
    data = section.model_dump(exclude_none=True, by_alias=True)
    return {k: v for k, v in data.items() if k not in skip}


def _call_text(name: str, args: dict[str, Any]) -> str:
    inner = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in args.items())
    return f"{name}({inner})"
