"""What every ``netspec`` command group shares: exit statuses, ``--set`` parsing, warning output.

In: raw ``--set KEY=VALUE`` strings, problems to print. Out: an overrides mapping (values read
by the same YAML 1.2 scalar reader as spec files), lines on stderr. Imports no torch: the
parser and the cheap commands must start fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import Location, Problem, SpecError, UsageError

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def add_set_argument(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """The repeatable ``--set KEY=VALUE`` option, spelled the same by every command that reads a spec."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)


def split_set(item: str) -> tuple[str, str]:
    """``"KEY=VALUE"`` -> ``("KEY", "VALUE")``, both stripped; ``UsageError`` without a key and ``=``."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
    if not text.strip():
        raise UsageError(
            f"--set {key.strip()}= has an empty value: write --set {key.strip()}=null for null, "
            f"or --set '{key.strip()}=\"\"' for an empty string"
        )
    return key.strip(), text.strip()


def parse_value(key: str, text: str) -> Any:
    """One ``--set`` value: a YAML 1.2 scalar, or a flow list/mapping (``[3,64,64]``) or quoted string."""
    from ..frontend.source import load_text, parse_scalar

    # Flow collections and quoted strings go through the same YAML reader as spec files.
    try:
        return load_text(text, f"--set {key}").data if text[:1] in "[{'\"" else parse_scalar(text)
    except SpecError as err:  # name the --set item a bad scalar came from (.nan), as flow values are named
        where = Location(f"--set {key}", 1, 1)
        located = [p if p.location else dataclasses.replace(p, location=where) for p in err.problems]
        raise SpecError(located) from None


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``["vars.width=128", "input.shape=[3,64,64]"]`` -> ``{"vars.width": 128, "input.shape": [3, 64, 64]}``."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, text = split_set(item)
        overrides[key] = parse_value(key, text)
    return overrides


def add_search_path_argument(parser: argparse.ArgumentParser) -> None:
    """The repeatable ``--search-path DIR``: folders ``extends`` and ``imports`` may read from."""
    parser.add_argument(
        "--search-path",
        action="append",
        default=None,
        metavar="DIR",
        help="a folder extends/imports may read from (repeatable; default: the spec's folder)",
    )


def print_warnings(problems: Sequence[Problem]) -> None:
    """One ``file:line:col: path: warning: ...`` line per problem, on stderr."""
    for p in problems:
        print(p.format(), file=sys.stderr)


__all__ = [
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_USAGE",
    "add_search_path_argument",
    "add_set_argument",
    "parse_set",
    "parse_value",
    "print_warnings",
    "split_set",
]
