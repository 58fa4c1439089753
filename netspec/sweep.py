"""``netspec sweep``: every combination of a few values, each validated on meta, one row per point.

In: a spec (file or dict), a grid ``{dotted key: [values]}`` (``--set K=V1,V2``), fixed overrides,
a target device and the search path. Out: one ``SweepPoint`` per combination, in the order of
``itertools.product`` over the keys as given — valid ones with their parameters, MACs, weight
bytes (checked against what the device has free) and fingerprint, invalid ones with their first
problem; ``write_points`` writes each valid point's resolved, self-contained spec into a folder
(atomically, named by its swept values) and an ``index.json`` describing every point. The spec
is read and composed once; each point validates a copy with its overrides. Nothing is allocated.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import NetspecError, SpecError
from .figures import Figures, figures, fits
from .io.atomic import atomic_write
from .spec import Spec, load_source, read_source

INDEX = "index.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


@dataclass
class SweepPoint:
    index: int
    values: dict[str, Any]  # swept key -> value at this point
    spec: Spec | None = None
    figures: Figures | None = None
    device_bytes: int | None = None  # parameters and buffers on the target device
    error: str | None = None  # the first problem, one line
    file: str | None = field(default=None)  # where write_points put its spec

    @property
    def valid(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        fig = self.figures
        return {
            "index": self.index,
            "values": self.values,
            "valid": self.valid,
            "error": self.error,
            "parameters": fig.parameters if fig else None,
            "macs": fig.macs if fig else None,
            "weight_bytes": self.device_bytes,
            "fingerprint": fig.fingerprint if fig else None,
            "file": self.file,
        }


def combinations(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every point of ``grid`` (the last key varies fastest)."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def _first_error(err: SpecError) -> str:
    errors = [p for p in err.problems if p.severity == "error"] or list(err.problems)
    return errors[0].format(show_source=False).splitlines()[0] if errors else str(err)


def run_sweep(
    spec: str | os.PathLike[str] | Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]],
    *,
    fixed: Mapping[str, Any] | None = None,
    device: str = "cpu",
    search_path: Sequence[str | os.PathLike[str]] | None = None,
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> list[SweepPoint]:
    """Validate every point of ``grid`` (with ``fixed`` overrides too); a broken base raises ``SpecError``."""
    source = load_source(spec, search_path)
    points = []
    todo = combinations(grid)
    for index, values in enumerate(todo):
        if progress is not None:
            progress(index, len(todo), values)
        point = SweepPoint(index, values)
        try:
            point.spec = read_source(source, {**(fixed or {}), **values})
            point.figures = figures(point.spec)
            point.device_bytes = fits(point.spec, device)
        except SpecError as err:
            point.error = _first_error(err)
        points.append(point)
    return points


def _label(value: Any) -> str:
    if isinstance(value, list):
        return "x".join(_label(v) for v in value)
    if isinstance(value, dict):
        return "-".join(f"{k}{_label(v)}" for k, v in value.items())
    return str(value).lower() if isinstance(value, bool) or value is None else str(value)


def point_name(values: Mapping[str, Any]) -> str:
    """A file stem from a point's swept values: ``width=64_lr=0.1`` (last key segments, unless they clash)."""
    last = [key.rsplit(".", 1)[-1] for key in values]
    keys = [short if last.count(short) == 1 else key for key, short in zip(values, last, strict=True)]
    text = "_".join(f"{k}={_label(v)}" for k, v in zip(keys, values.values(), strict=True))
    return _UNSAFE.sub("-", text).strip("-.") or "point"


def write_points(points: list[SweepPoint], folder: str | os.PathLike[str], spec: str, grid: Mapping[str, Any]) -> Path:
    """Each valid point's resolved spec as ``folder/NAME.yaml`` and ``folder/index.json``; returns the index."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise NetspecError(f"-o {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for point in points:
        name = point_name(point.values)
        while name in used:  # two values that render alike ("1" and 1)
            name += f"-{point.index}"
        used.add(name)
        if point.spec is None or not point.valid:
            continue
        text = point.spec.to_yaml().encode("utf-8")
        target = atomic_write(out / f"{name}.yaml", lambda fh, text=text: fh.write(text))
        point.file = target.name
    index = {
        "spec": spec,
        "swept": {k: list(v) for k, v in grid.items()},
        "points": [p.to_dict() for p in points],
    }
    data = (json.dumps(index, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    return atomic_write(out / INDEX, lambda fh: fh.write(data))


def table(points: list[SweepPoint], keys: Sequence[str]) -> str:
    """One row per point: the swept values, ok/invalid, parameters, MACs, weight bytes, the first problem."""
    from .compiler.memory import human

    header = ["#", *keys, "status", "params", "MACs", "weights", "problem"]
    rows = []
    for p in points:
        fig = p.figures
        rows.append(
            [
                str(p.index),
                *(json.dumps(p.values[k]) if not isinstance(p.values[k], str) else p.values[k] for k in keys),
                "ok" if p.valid else "invalid",
                f"{fig.parameters:,}" if fig and p.valid else "-",
                f"{fig.macs:,}" if fig and fig.macs is not None and p.valid else "-",
                human(p.device_bytes) if p.device_bytes is not None and p.valid else "-",
                p.error or "",
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    valid = sum(p.valid for p in points)
    lines.append(f"{valid} of {len(points)} points valid")
    return "\n".join(lines) + "\n"


__all__ = ["INDEX", "SweepPoint", "combinations", "point_name", "run_sweep", "table", "write_points"]
