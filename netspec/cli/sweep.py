"""The ``sweep`` subcommand: every combination of ``--set K=V1,V2`` values validated on meta.

In: a spec, ``--set`` items in Hydra's multirun convention (commas separate values; a bracketed
list or a braced mapping is one value: ``--set input.shape=[3,64,64],[3,128,128]``; a single
value is a fixed override), ``--device`` (whose free memory the weights must fit), ``-o DIR``.
Out: one row per point on stdout (table or JSON) — an invalid point shows its first problem and
the others still print; with ``-o``, each valid point's resolved spec and ``index.json``.
Progress goes to stderr only when stderr is a terminal. Exit status 1 if any point is invalid.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import UsageError
from .common import EXIT_INVALID, EXIT_OK, add_search_path_argument, parse_value, split_set

_OPEN, _CLOSE = "[{", "]}"


def split_values(text: str) -> list[str]:
    """Split ``V1,V2,...`` at the commas outside brackets, braces and quotes."""
    parts: list[str] = []
    depth, quote, start = 0, "", 0
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_grid(items: list[str]) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """``--set`` items -> (swept keys with their values, fixed overrides)."""
    grid: dict[str, list[Any]] = {}
    fixed: dict[str, Any] = {}
    for item in items:
        key, text = split_set(item)
        if key in grid or key in fixed:
            raise UsageError(f"--set {key} is given twice; list its values once: --set {key}=V1,V2")
        pieces = split_values(text)
        if any(p == "" for p in pieces) and len(pieces) > 1:
            raise UsageError(f"--set {item}: an empty value between commas")
        values = [parse_value(key, p) for p in pieces]
        if len(values) == 1:
            fixed[key] = values[0]
        else:
            grid[key] = values
    return grid, fixed


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..sweep import run_sweep, table, write_points
    from .build import check_device

    grid, fixed = parse_grid(args.set)
    if not grid:
        raise UsageError("sweep needs at least one --set KEY=V1,V2,... with two or more values")
    check_device(args.device)
    tty = sys.stderr.isatty()

    def progress(index: int, total: int, values: dict[str, Any]) -> None:
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())
        print(f"\r\033[K[{index + 1}/{total}] {shown}", end="", file=sys.stderr, flush=True)

    points = run_sweep(
        args.spec,
        grid,
        fixed=fixed,
        device=args.device,
        search_path=args.search_path,
        progress=progress if tty else None,
    )
    if tty:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    if args.output:
        index = write_points(points, args.output, str(args.spec), grid)
        print(f"wrote {sum(p.valid for p in points)} specs and {index}", file=sys.stderr)
    if args.format == "json":
        sys.stdout.write(json.dumps([p.to_dict() for p in points], indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(table(points, list(grid)))
    return EXIT_OK if all(p.valid for p in points) else EXIT_INVALID


def add_parsers(subparsers: Any) -> None:
    """Add ``sweep`` to ``netspec``'s subcommands."""
    s = subparsers.add_parser("sweep", help="every combination of --set K=V1,V2 values validated on meta")
    s.add_argument("spec", help="spec file (.yaml, .yml or .json)")
    s.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="values to sweep (commas separate values; [a,b] is one list value); one value: a fixed override",
    )
    s.add_argument("-o", "--output", metavar="DIR", help="write each valid point's resolved spec and index.json here")
    s.add_argument("--device", default="cpu", help="the target device whose free memory the weights must fit")
    s.add_argument("--format", choices=("table", "json"), default="table")
    add_search_path_argument(s)
    s.set_defaults(run=cmd_sweep)


__all__ = ["add_parsers", "cmd_sweep", "parse_grid", "split_values"]
