"""The ``netspec`` command line: the parser, the exit statuses and the one error handler.

In: argv. Out: what the chosen command prints, problems on stderr in the
``file:line:col: path: message`` form, and exit status 0 (success), 1 (invalid spec or
model) or 2 (wrong usage). No Python traceback reaches the terminal for a spec problem.

Each command group is a module in ``netspec.cli`` with an ``add_parsers(subparsers)``
function; adding a group is one line in ``COMMAND_GROUPS``. Making the parser imports no
torch (``netspec --help`` starts in a fraction of a second): a command imports its stage
when it runs.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Sequence

from ..errors import NetspecError, SpecError, UsageError, first_line, printable, shorten
from .common import EXIT_INVALID, EXIT_OK, EXIT_USAGE

# Modules of netspec.cli that add subcommands, in the order `netspec --help` lists them.
COMMAND_GROUPS = (
    "build",  # build, validate, schema
    "emit",  # emit, check
    "draw",  # draw, schedule
    "show",  # show
    "diff",  # diff
    "sweep",  # sweep
    "plan",  # plan
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netspec", description="Declarative PyTorch models from YAML/JSON specs.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        importlib.import_module(f"{__package__}.{group}").add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``netspec`` command; returns its exit status. ``argv=None``: the process's own command
    line (the ``netspec`` script, ``python -m netspec``), which ends when this returns."""
    code = run_command(argv)
    if argv is None:
        # The interpreter's shutdown collects every cycle left (a built model, torch's modules): about
        # 0.4 s after a 7B summary. The process is ending, so leave them to the OS; atexit handlers and
        # stream flushing still run, and every file netspec writes is complete and closed by now.
        gc.freeze()
    return code


def run_command(argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run the command, mapping every error to its exit status and a message."""
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
        print(f"netspec: {printable(str(err))}", file=sys.stderr)
        return EXIT_USAGE
    except SpecError as err:
        print(str(err), file=sys.stderr)  # Problem.format escapes and bounds what came from the spec
        return EXIT_INVALID
    except NetspecError as err:
        print(f"netspec: {printable(shorten(str(err), 4000))}", file=sys.stderr)
        return EXIT_INVALID
    except OSError as err:  # the machine's problem (disk full, permission denied), not netspec's
        print(f"netspec: {printable(first_line(err))}", file=sys.stderr)
        return EXIT_INVALID
    except Exception as err:  # anything else is a bug in netspec: a short request to report it
        if os.environ.get("NETSPEC_DEBUG") == "1":
            raise
        what = printable(shorten(f"{type(err).__name__}: {first_line(err)}", 300), keep_newlines=False)
        print(
            f"netspec: internal error ({what}).\n"
            "This is a bug in netspec, not in your spec: please report it with the command and the spec.\n"
            "Run again with NETSPEC_DEBUG=1 to see the traceback.",
            file=sys.stderr,
        )
        return EXIT_INVALID


__all__ = ["COMMAND_GROUPS", "EXIT_INVALID", "EXIT_OK", "EXIT_USAGE", "main", "make_parser", "run_command"]

if __name__ == "__main__":
    sys.exit(main())
