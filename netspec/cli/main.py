"""The ``netspec`` command line: build, validate, schema.

In: argv. Out: a summary table or JSON on stdout, problems on stderr in the
``file:line:col: path: message`` form, and exit status 0 (success), 1 (invalid spec or
model) or 2 (wrong usage). No Python traceback reaches the terminal for a spec problem.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import Location, NetspecError, Problem, SpecError, UsageError
from ..io.atomic import atomic_write

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    from ..frontend.source import load_text, parse_scalar

    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        text = text.strip()
        # Flow collections (--set input.shape=[3,64,64]) go through the same YAML reader as spec files.
        try:
            value = load_text(text, f"--set {key}").data if text[:1] in "[{" else parse_scalar(text)
        except SpecError as err:  # name the --set item a bad scalar came from (.nan), as flow values are named
            where = Location(f"--set {key}", 1, 1)
            located = [p if p.location else dataclasses.replace(p, location=where) for p in err.problems]
            raise SpecError(located) from None
        overrides[key.strip()] = value
    return overrides


def _print_warnings(problems: Sequence[Problem]) -> None:
    for p in problems:
        print(p.format(), file=sys.stderr)


def _check_device(name: str) -> None:
    """Refuse a device this machine does not have (--device cuda without CUDA) as a user error, not a crash."""
    try:
        device = torch.device(name)
        if device.type != "meta":
            torch.empty(0, device=device)
    except Exception as err:
        lines = str(err).strip().splitlines()
        raise NetspecError(f"device {name!r} is not available: {lines[0] if lines else type(err).__name__}") from None


def cmd_build(args: argparse.Namespace) -> int:
    from ..api import build
    from ..summary import summarize

    overrides = _parse_set(args.set)
    _check_device(args.device)
    if args.output and torch.device(args.device).type == "meta":
        raise UsageError("-o needs weights, and --device meta builds none: drop one of them")
    built = build(args.spec, device=args.device, overrides=overrides)
    _print_warnings(built.warnings)
    if args.from_checkpoint:
        from ..io.checkpoint import load_weights

        load_weights(built.model, args.from_checkpoint)
        print(f"loaded weights from {args.from_checkpoint}", file=sys.stderr)
    spec = built.spec
    if args.explain:
        from ..training import explain_rows, format_explain

        print(format_explain(explain_rows(built.training)), end="")
    else:
        from ..training import group_summary

        inp = spec.document.input
        from ..compiler.infer import DTYPES

        summary = summarize(
            built.model,
            lambda: spec.inferred.meta_model,
            spec.name,
            tuple(inp.shape) if inp else None,
            DTYPES[inp.dtype] if inp else torch.float32,
            depth=args.depth,
            shapes=spec.inferred.shapes,
            groups=group_summary(built.training) if built.optimizer is not None else [],
        )
        print(summary.to_json() if args.format == "json" else summary.to_table(), end="")
    if args.output:
        out = Path(args.output)
        atomic_write(out, lambda fh: torch.save(built.model.state_dict(), fh))
        print(f"saved state_dict to {out}", file=sys.stderr)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from ..spec import read

    status = EXIT_OK
    overrides = _parse_set(args.set)
    for path in args.specs:
        try:
            spec = read(path, overrides)
        except NetspecError as err:
            print(str(err), file=sys.stderr)
            status = EXIT_INVALID
            continue
        _print_warnings(spec.warnings)
        print(f"{path}: ok")
    return status


def cmd_schema(args: argparse.Namespace) -> int:
    from ..schema import schema_text

    text = schema_text()
    if args.output:
        atomic_write(Path(args.output), lambda fh: fh.write(text.encode("utf-8")))
    else:
        sys.stdout.write(text)
    return EXIT_OK


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netspec", description="Declarative PyTorch models from YAML/JSON specs.")
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="validate, build and print the summary")
    b.add_argument("spec", help="spec file (.yaml, .yml or .json)")
    b.add_argument("-o", "--output", help="save the built model's state_dict here (atomically)")
    b.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a value, e.g. vars.width=128"
    )
    b.add_argument("--device", default="cpu", help="device to build on (cpu, cuda, cuda:1, meta)")
    b.add_argument("--format", choices=("table", "json"), default="table")
    b.add_argument("--depth", type=int, default=None, help="fold modules nested deeper than N")
    b.add_argument(
        "--explain", action="store_true", help="one row per parameter: init, frozen, group, lr, weight decay"
    )
    b.add_argument(
        "--from-checkpoint",
        metavar="FILE",
        help="load the weights from FILE (a state_dict, a {'state_dict': ...} wrapper or a netspec checkpoint; "
        "strict, a DataParallel 'module.' prefix is stripped)",
    )
    b.set_defaults(run=cmd_build)

    v = sub.add_parser("validate", help="check one or more specs without building")
    v.add_argument("specs", nargs="+")
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    v.set_defaults(run=cmd_validate)

    s = sub.add_parser("schema", help="write the JSON Schema of the spec language")
    s.add_argument("-o", "--output", help="file to write (default: stdout)")
    s.set_defaults(run=cmd_schema)
    from .emit import add_emit_parsers

    add_emit_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0) and EXIT_USAGE
    if getattr(args, "depth", None) is not None and args.depth < 0:
        print("netspec: --depth must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args))
    except UsageError as err:
        print(f"netspec: {err}", file=sys.stderr)
        return EXIT_USAGE
    except SpecError as err:
        print(str(err), file=sys.stderr)
        return EXIT_INVALID
    except NetspecError as err:
        print(f"netspec: {err}", file=sys.stderr)
        return EXIT_INVALID
    except (RuntimeError, OSError) as err:
        # e.g. an unavailable --device or an unwritable -o: a user's problem, not a crash.
        print(f"netspec: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", file=sys.stderr)
        return EXIT_INVALID
    except Exception as err:
        if os.environ.get("NETSPEC_DEBUG"):
            raise
        hint = "set NETSPEC_DEBUG=1 for the traceback and please report it"
        print(f"netspec: internal error: {type(err).__name__}: {err} ({hint})", file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
