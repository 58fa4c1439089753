"""``netspec plan``: per-rank memory of a spec under its ``distributed:`` section, on meta.

In: argv already parsed (spec, ``--world N``, ``--format``, ``--device-memory BYTES``, ``--set``).
Out: the plan as a table or JSON on stdout; warnings (a rank over the device-memory budget, a
spec without a ``distributed:`` section) on stderr. Needs no process group and no GPU.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from ..errors import UsageError
from .common import EXIT_OK, add_set_argument, parse_set, print_warnings

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3}
_UNITS |= {"kib": 1024, "mib": 1024**2, "gib": 1024**3, "tb": 1000**4, "tib": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_bytes(text: str) -> int:
    """``80GiB``, ``80e9`` and ``85899345920`` all work; a bare number is bytes."""
    match = _SIZE.match(text)
    if match is None:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"--device-memory expects bytes (e.g. 80GiB or 85899345920), got {text!r}") from None
        return int(value)
    number, unit = match.groups()
    if unit.lower() not in _UNITS:
        raise UsageError(f"--device-memory: unknown unit {unit!r}; use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB")
    return int(float(number) * _UNITS[unit.lower()])


def cmd_plan(args: argparse.Namespace) -> int:
    from ..planning import plan

    if args.world < 1:
        raise UsageError(f"--world must be at least 1, got {args.world}")
    budget = parse_bytes(args.device_memory) if args.device_memory is not None else None
    if budget is not None and budget <= 0:
        raise UsageError("--device-memory must be positive")
    result = plan(args.spec, args.world, device_memory=budget, overrides=parse_set(args.set))
    print_warnings(result.warnings)
    sys.stdout.write(result.to_json() if args.format == "json" else result.to_table())
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("plan", help="per-rank parameter, gradient and optimizer-state bytes under FSDP/DDP")
    p.add_argument("spec", help="spec file (.yaml, .yml or .json)")
    p.add_argument("--world", type=int, required=True, metavar="N", help="number of ranks (GPUs)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument(
        "--device-memory", metavar="BYTES", help="warn when a rank needs more than this (bytes, or 80GiB, 141GB)"
    )
    add_set_argument(p)
    p.set_defaults(run=cmd_plan)
