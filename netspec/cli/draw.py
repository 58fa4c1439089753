"""``netspec draw`` and ``netspec schedule``: the commands that make pictures.

In: argv already parsed. Out: a diagram (.dot/.mmd/.svg/.html) or a learning-rate schedule
(.csv/.svg/.png) written atomically to ``-o``, or DOT / CSV on stdout without ``-o``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_OK, add_set_argument, parse_set


def cmd_draw(args: argparse.Namespace) -> int:
    from ..spec import read
    from ..viz import draw, render

    spec = read(args.spec, parse_set(args.set))
    if args.output:
        out = draw(spec, args.output, depth=args.depth, expand=args.expand)
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(render(spec, "." + args.format, depth=args.depth, expand=args.expand))
    return EXIT_OK


def cmd_schedule(args: argparse.Namespace) -> int:
    from ..schedule import compute, write
    from ..spec import read

    schedule = compute(read(args.spec, parse_set(args.set)), args.steps)
    if args.output:
        out = write(schedule, Path(args.output))
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(schedule.to_csv())
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    d = sub.add_parser("draw", help="the architecture as a picture (.dot, .mmd, .svg, .html)")
    d.add_argument("spec", help="spec file (.yaml, .yml or .json)")
    d.add_argument("-o", "--output", help="file to write; its extension picks the format (default: DOT on stdout)")
    d.add_argument("--format", choices=("dot", "mmd", "svg", "html"), default="dot", help="stdout format without -o")
    d.add_argument("--depth", type=int, default=None, help="open containers down to level N (default: fold to fit)")
    d.add_argument("--expand", action="store_true", help="draw every copy of a repeat instead of one box ×N")
    add_set_argument(d)
    d.set_defaults(run=cmd_draw)

    s = sub.add_parser("schedule", help="every optimizer group's learning rate over N steps")
    s.add_argument("spec", help="spec file (.yaml, .yml or .json)")
    s.add_argument("--steps", type=int, required=True, help="how many scheduler steps to compute")
    s.add_argument("-o", "--output", help="lr.csv, lr.svg or lr.png (pictures need netspec[plot]; default: CSV)")
    add_set_argument(s)
    s.set_defaults(run=cmd_schedule)
