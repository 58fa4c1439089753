"""The ``diff`` subcommand: two specs or checkpoints compared (``netspec.diff``).

In: A and B (spec files or checkpoints), ``--set`` (both), ``--set-a``/``--set-b`` (one side),
``--search-path``; ``netspec diff s.yaml s.yaml --set-b vars.width=128`` shows what an override
changes. Out on stdout: the differing values with both locations, the modules added/removed/changed,
parameter and MAC deltas and which of A's weights load into B — as a table or JSON. Exit status 0
whether or not anything differs; with ``--exit-code``, 1 when something does (as ``git diff --exit-code``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import EXIT_INVALID, EXIT_OK, add_search_path_argument, add_set_argument, parse_set


def cmd_diff(args: argparse.Namespace) -> int:
    from ..comparison import diff

    result = diff(
        args.a,
        args.b,
        search_path=args.search_path,
        overrides=parse_set(args.set),
        overrides_a=parse_set(args.set_a),
        overrides_b=parse_set(args.set_b),
    )
    if args.format == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        sys.stdout.write(result.to_table())
    return EXIT_INVALID if args.exit_code and result.differs else EXIT_OK


def add_parsers(subparsers: Any) -> None:
    """Add ``diff`` to ``netspec``'s subcommands."""
    d = subparsers.add_parser("diff", help="two specs or checkpoints compared: values, modules, params, weights")
    d.add_argument("a", help="spec file or checkpoint")
    d.add_argument("b", help="spec file or checkpoint")
    d.add_argument("--format", choices=("table", "json"), default="table")
    d.add_argument("--exit-code", action="store_true", help="exit with status 1 when A and B differ")
    add_set_argument(d, help="override a value in both A and B (repeatable)")
    d.add_argument("--set-a", action="append", default=[], metavar="KEY=VALUE", help="override a value in A only")
    d.add_argument("--set-b", action="append", default=[], metavar="KEY=VALUE", help="override a value in B only")
    add_search_path_argument(d)
    d.set_defaults(run=cmd_diff)


__all__ = ["add_parsers", "cmd_diff"]
