"""``netspec schedule``: every optimizer group's learning rate over N scheduler steps.

In: a spec with an ``optimizer`` (and usually a ``scheduler``), a number of steps. Out: a
``Schedule`` (one row per step, one column per param group, warm-up included) computed by
stepping the spec's real torch scheduler on a model built on the meta device — so what is
plotted is what training will do, not a re-implementation. Written as CSV (always
available) or as an SVG/PNG plot through matplotlib (the optional ``netspec[plot]`` extra).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import NetspecError

MAX_STEPS = 10_000_000


class ScheduleError(NetspecError):
    """The schedule cannot be computed or written (no optimizer, a metric-driven scheduler, no matplotlib)."""


@dataclass
class Schedule:
    name: str
    interval: str  # "step" or "epoch": what one row is
    groups: list[str]  # one label per optimizer param group
    lrs: list[list[float]]  # lrs[step][group], the lr in effect during that step

    def to_csv(self) -> str:
        out = io.StringIO()
        out.write(",".join([self.interval, *(_csv_cell(g) for g in self.groups)]) + "\n")
        for step, row in enumerate(self.lrs):
            out.write(",".join([str(step), *(repr(float(v)) for v in row)]) + "\n")
        return out.getvalue()


def _csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def compute(spec: Any, steps: int) -> Schedule:
    """Step the spec's scheduler ``steps`` times on a meta-device build, recording each group's lr."""
    from .api import build
    from .spec import Spec, read

    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        raise ScheduleError(f"--steps must be a whole number from 1 to {MAX_STEPS:,}, got {steps!r}")
    spec = spec if isinstance(spec, Spec) else read(spec)
    built = build(spec, device="meta")
    optimizer, scheduler = built.optimizer, built.scheduler
    if optimizer is None:
        raise ScheduleError(f"{spec.name}: the spec has no optimizer, so there is no learning rate to show")
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    if isinstance(scheduler, ReduceLROnPlateau):
        raise ScheduleError(
            f"{spec.name}: ReduceLROnPlateau lowers the learning rate when a metric stops improving, "
            "so its schedule cannot be computed ahead of training"
        )
    training = built.training
    labels = list(training.group_labels) if training is not None else []
    groups = [
        f"group {k}: {labels[k]}" if k < len(labels) else f"group {k}" for k in range(len(optimizer.param_groups))
    ]
    interval = training.scheduler_interval if training is not None and scheduler is not None else "step"
    rows: list[list[float]] = []
    for _ in range(steps):
        rows.append([float(g["lr"]) for g in optimizer.param_groups])
        if scheduler is None:
            continue
        # The model is on meta and has no gradients, so optimizer.step() changes nothing; calling it keeps
        # torch from warning that the scheduler stepped first.
        optimizer.step()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*epoch parameter.*")
            scheduler.step()
    return Schedule(spec.name, interval, groups, rows)


def plot(schedule: Schedule, path: Path) -> bytes:
    """The schedule as an SVG or PNG (by ``path``'s extension), drawn by matplotlib without a display."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ScheduleError(
            f"writing {path.suffix} needs matplotlib: pip install 'netspec[plot]' (or write .csv, which needs nothing)"
        ) from None
    # A fixed salt for the SVG's element ids: the same schedule gives the same file.
    with plt.rc_context({"svg.hashsalt": "netspec"}):
        return _draw(plt, schedule, path)


def _draw(plt: Any, schedule: Schedule, path: Path) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    try:
        steps = range(len(schedule.lrs))
        for k, label in enumerate(schedule.groups):
            ax.plot(steps, [row[k] for row in schedule.lrs], label=label, linewidth=1.5)
        ax.set_xlabel(schedule.interval)
        ax.set_ylabel("learning rate")
        ax.set_title(f"{schedule.name}: learning rate per param group")
        ax.grid(True, alpha=0.3)
        if len(schedule.groups) > 1:
            ax.legend(fontsize=8)
        fig.tight_layout()
        out = io.BytesIO()
        # metadata: no creation date, so the same schedule gives the same file
        metadata: dict[str, Any] = {"Date": None} if path.suffix == ".svg" else {"Software": None}
        fig.savefig(out, format=path.suffix.lstrip("."), metadata=metadata)
        return out.getvalue()
    finally:
        plt.close(fig)


def write(schedule: Schedule, path: str | Path) -> Path:
    """Write ``schedule`` to ``path`` atomically: .csv as text, .svg/.png as a plot."""
    from .io.atomic import atomic_write

    out = Path(path)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        data = schedule.to_csv().encode("utf-8")
    elif suffix in (".svg", ".png"):
        data = plot(schedule, out)
    else:
        raise ScheduleError(f"cannot write a schedule to {str(path)!r}: use .csv, .svg or .png")
    atomic_write(out, lambda fh: fh.write(data))
    return out
