"""The ``emit`` and ``check`` subcommands of the ``netspec`` command line.

In: ``MODULE:FACTORY`` (a Python module path and a callable in it — a function or an
``nn.Module`` class), optional JSON keyword arguments for it, an input shape, an output file.
Out: ``emit`` writes the model's spec (YAML, or JSON for a ``.json`` file; stdout without
``-o``) atomically and prints on stderr what it could not express exactly; ``check`` prints
the registration lint findings (modules or tensors PyTorch does not register). These are the
only netspec commands that import and run user code; torch is imported when they run, not
when the parser is made. Exit status: 0 success (``check``: no
findings), 1 a model that cannot be expressed (``check``: findings), 2 wrong usage.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from ..errors import NetspecError, UsageError
from .common import EXIT_INVALID, EXIT_OK

if TYPE_CHECKING:
    import torch.nn as nn

USER_CODE_NOTE = "imports MODULE and calls FACTORY: the one kind of netspec command that runs your Python code"


def _kwargs(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(
            f"--args must be a JSON object, e.g. '{{\"width\": 64}}': {err.msg} at column {err.colno}"
        ) from None
    if not isinstance(value, dict):
        raise UsageError(f"--args must be a JSON object of keyword arguments, got {type(value).__name__} {text!r}")
    return value


def _shape(text: str | None) -> list[int] | None:
    if not text:
        return None
    parts = [p.strip() for p in text.strip("[]() ").split(",") if p.strip()]
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if not dims or any(d <= 0 for d in dims):
        raise UsageError(
            f"--input-shape expects positive sizes without the batch dimension, e.g. 3,224,224; got {text!r}"
        )
    return dims


def load_factory(target: str) -> Any:
    """``package.module:factory`` (``factory`` may be dotted: ``Class.method``) -> the callable."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected MODULE:FACTORY (e.g. mypackage.models:resnet), got {target!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: modules in the current folder are importable
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise NetspecError(
                f"cannot import {module_name!r}: no module named {err.name!r} (run from the folder that "
                "contains it, or install it)"
            ) from None
        raise NetspecError(f"importing {module_name!r} failed: {type(err).__name__}: {err}") from None
    except Exception as err:  # the user's module runs at import and may raise anything: kept as the cause
        raise NetspecError(f"importing {module_name!r} failed: {type(err).__name__}: {err}") from err
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            from ..errors import did_you_mean

            hint = did_you_mean(part, names)
            raise NetspecError(f"{module_name} has no attribute {attr!r}" + (f"; {hint}" if hint else ""))
        obj = getattr(obj, part)
    if not callable(obj):
        raise NetspecError(f"{target} is a {type(obj).__name__}, not a function or class to call")
    return obj


def make_model(target: str, kwargs: dict[str, Any]) -> tuple[nn.Module, Any]:
    """Call the factory; it returns a module, or ``(module, optimizer)``."""
    import torch.nn as nn

    factory = load_factory(target)
    try:
        result = factory(**kwargs)
    except Exception as err:  # the user's factory may raise anything: kept as the cause
        raise NetspecError(f"{target}(**{kwargs}) raised {type(err).__name__}: {err}") from err
    optimizer = None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module):
        result, optimizer = result
    if not isinstance(result, nn.Module):
        raise NetspecError(
            f"{target} returned {type(result).__name__} {result!r:.60}; expected an nn.Module (or (model, optimizer))"
        )
    return result, optimizer


def cmd_emit(args: argparse.Namespace) -> int:
    from ..emitter.walker import emit
    from ..io.atomic import atomic_write, check_target

    if args.output is not None:
        check_target(args.output)  # before the model is made: nothing is written for a bad -o
    kwargs = _kwargs(args.args)
    shape = _shape(args.input_shape)
    model, optimizer = make_model(args.target, kwargs)
    inputs = [n.strip() for n in args.inputs.split(",") if n.strip()] if args.inputs else None
    spec = emit(model, optimizer=optimizer, input_shape=shape, inputs=inputs, input_dtype=args.input_dtype)
    for warning in getattr(spec, "emit_warnings", []):
        print(warning.format(), file=sys.stderr)
    output = args.output
    text = spec.to_json() if output and output.lower().endswith(".json") else spec.to_yaml()
    if output is not None:
        atomic_write(output, lambda fh: fh.write(text.encode("utf-8")))
        count = len(getattr(spec, "emit_warnings", []))
        note = f" ({count} warning(s) above)" if count else ""
        print(f"wrote {output}{note}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from ..emitter.lint import lint

    model, _ = make_model(args.target, _kwargs(args.args))
    found = lint(model)
    for warning in found:
        print(warning.format())
    if not found:
        print(f"{args.target}: ok, every module and tensor is registered")
        return EXIT_OK
    print(f"{args.target}: {len(found)} registration problem(s)", file=sys.stderr)
    return EXIT_INVALID


def add_parsers(subparsers: Any) -> None:
    """Add ``emit`` and ``check`` to ``netspec``'s subcommands (``parser.add_subparsers()``'s result)."""
    e = subparsers.add_parser(
        "emit",
        help="write the spec of an existing model (runs your code)",
        description=f"Write the spec of the model FACTORY returns. This {USER_CODE_NOTE}; "
        "every other netspec command only reads data.",
    )
    e.add_argument("target", metavar="MODULE:FACTORY", help="e.g. mypackage.models:resnet50 (a function or class)")
    e.add_argument(
        "--args", metavar="JSON", help="keyword arguments for FACTORY as a JSON object, e.g. '{\"depth\": 18}'"
    )
    e.add_argument("--input-shape", metavar="DIMS", help="per-sample input shape without the batch, e.g. 3,224,224")
    e.add_argument(
        "--input-dtype",
        choices=("float32", "float64", "float16", "bfloat16", "int64", "int32", "bool"),
        help="dtype of the input (int64 for token ids); needs --input-shape",
    )
    e.add_argument(
        "--inputs",
        metavar="NAMES",
        help="comma-separated forward arguments the spec takes, e.g. input_ids (the rest keep their defaults)",
    )
    e.add_argument("-o", "--output", metavar="SPEC", help="file to write (.yaml/.yml or .json); default: stdout")
    e.set_defaults(run=cmd_emit)

    c = subparsers.add_parser(
        "check",
        help="find modules and tensors PyTorch does not register (runs your code)",
        description=f"Report modules kept in plain lists/dicts and tensors kept as plain attributes. This "
        f"{USER_CODE_NOTE}. Exit status 1 when something is found.",
    )
    c.add_argument("target", metavar="MODULE:FACTORY", help="e.g. mypackage.models:resnet50")
    c.add_argument("--args", metavar="JSON", help="keyword arguments for FACTORY as a JSON object")
    c.set_defaults(run=cmd_check)


__all__ = ["add_parsers", "cmd_check", "cmd_emit", "load_factory", "make_model"]
