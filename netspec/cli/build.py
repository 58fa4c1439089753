"""The ``build``, ``validate`` and ``schema`` subcommands of the ``netspec`` command line.

In: spec files, ``--set`` overrides, a device. Out: ``build`` prints the summary table (or
JSON, or the ``--explain`` rows) and may save the state_dict; ``validate`` prints
``FILE: ok`` per valid spec; ``schema`` writes the JSON Schema. Exit status as in
``netspec.cli.common``. torch is imported only by the command that needs it: ``validate``
of a file with a YAML or structural error, ``schema`` and ``--help`` never import it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import NetspecError, UsageError
from ..frontend.dtypes import FLOATING_DTYPES
from .common import EXIT_INVALID, EXIT_OK, add_search_path_argument, add_set_argument, parse_set, print_warnings


def check_device(name: str) -> None:
    """Refuse a device this machine does not have (--device cuda without CUDA) as a user error, not a crash."""
    from ..api import check_device as usable

    usable(name)


def cmd_build(args: argparse.Namespace) -> int:
    import torch

    from ..api import build
    from ..io.atomic import atomic_write, check_target
    from ..summary import DEFAULT_COLUMNS, summarize_built
    from ..training import explain_rows, format_explain

    columns = _columns(args.columns) if args.columns is not None else DEFAULT_COLUMNS
    overrides = parse_set(args.set)
    check_device(args.device)
    inputs = [p for p in (args.spec, args.from_checkpoint) if p]
    if args.output is not None:
        if torch.device(args.device).type == "meta":
            raise UsageError("-o needs weights, and --device meta builds none: drop one of them")
        check_target(args.output, inputs)  # before the build: nothing is written for a bad -o
    built = build(args.spec, device=args.device, dtype=args.dtype, overrides=overrides, search_path=args.search_path)
    print_warnings(built.warnings)
    if args.from_checkpoint:
        from ..io.weights import load_weights

        load_weights(built.model, args.from_checkpoint)
        print(f"loaded weights from {args.from_checkpoint}", file=sys.stderr)
    if args.explain:
        rows = explain_rows(built.training)
        if args.format == "json":
            print(json.dumps(rows, indent=2, default=str))
        else:
            print(format_explain(rows), end="")
    else:
        summary = summarize_built(built, depth=args.depth, columns=columns)
        print(summary.to_json() if args.format == "json" else summary.to_table(), end="")
    if args.output is not None:
        out = Path(args.output)
        atomic_write(out, lambda fh: torch.save(built.model.state_dict(), fh), inputs=inputs)
        print(f"saved state_dict to {out}", file=sys.stderr)
    return EXIT_OK


def _columns(text: str) -> tuple[str, ...]:
    """``--columns output,params``: checked before anything is built, so a typo is a usage error."""
    from ..errors import did_you_mean
    from ..summary import COLUMNS

    names = tuple(c.strip() for c in text.split(",") if c.strip())
    if not names:
        raise UsageError(f"--columns needs at least one of {', '.join(COLUMNS)}")
    for name in names:
        if name not in COLUMNS:
            hint = did_you_mean(name, COLUMNS) or f"the columns are {', '.join(COLUMNS)}"
            raise UsageError(f"--columns: unknown column {name!r}; {hint}")
    return names


def cmd_validate(args: argparse.Namespace) -> int:
    from ..spec import read

    status = EXIT_OK
    overrides = parse_set(args.set)
    for path in args.specs:
        try:
            spec = read(path, overrides, search_path=args.search_path, dtype=args.dtype)
        except NetspecError as err:
            print(str(err), file=sys.stderr)
            status = EXIT_INVALID
            continue
        print_warnings(spec.warnings)
        print(f"{path}: ok")
    return status


def cmd_schema(args: argparse.Namespace) -> int:
    from ..io.atomic import atomic_write, check_target
    from ..schema import schema_text

    if args.output is not None:
        check_target(args.output)
    text = schema_text()
    if args.output is not None:
        atomic_write(args.output, lambda fh: fh.write(text.encode("utf-8")))
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _add_dtype_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dtype",
        choices=FLOATING_DTYPES,
        default=None,
        help="the weights' dtype (default float32); every layer's input dtype is checked against it",
    )


def add_parsers(subparsers: Any) -> None:
    """Add ``build``, ``validate`` and ``schema`` to ``netspec``'s subcommands."""
    b = subparsers.add_parser("build", help="validate, build and print the summary")
    b.add_argument("spec", help="spec file (.yaml, .yml or .json)")
    b.add_argument("-o", "--output", help="save the built model's state_dict here (atomically)")
    add_set_argument(b, "override a value, e.g. vars.width=128")
    b.add_argument("--device", default="cpu", help="device to build on (cpu, cuda, cuda:1, meta)")
    _add_dtype_argument(b)
    b.add_argument("--format", choices=("table", "json"), default="table")
    b.add_argument("--depth", type=int, default=None, help="fold modules nested deeper than N")
    b.add_argument(
        "--columns",
        default=None,
        metavar="COL,COL",
        help="summary columns, from input,output,kernel,params,macs,trainable,memory,connected "
        "(default: output,params,macs,trainable)",
    )
    b.add_argument(
        "--explain", action="store_true", help="one row per parameter: init, frozen, group, lr, weight decay"
    )
    b.add_argument(
        "--from-checkpoint",
        metavar="FILE",
        help="load the weights from FILE (a state_dict, a {'state_dict': ...} wrapper or a netspec checkpoint; "
        "strict, a DataParallel 'module.' prefix is stripped)",
    )
    add_search_path_argument(b)
    b.set_defaults(run=cmd_build)

    v = subparsers.add_parser("validate", help="check one or more specs without building")
    v.add_argument("specs", nargs="+")
    add_set_argument(v)
    _add_dtype_argument(v)
    add_search_path_argument(v)
    v.set_defaults(run=cmd_validate)

    s = subparsers.add_parser("schema", help="write the JSON Schema of the spec language")
    s.add_argument("-o", "--output", help="file to write (default: stdout)")
    s.set_defaults(run=cmd_schema)


__all__ = ["add_parsers", "check_device", "cmd_build", "cmd_schema", "cmd_validate"]
