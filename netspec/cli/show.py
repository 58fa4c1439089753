"""The ``show`` subcommand: the merged spec, optionally with where every value was written.

In: a spec file (plus ``--set`` and ``--search-path``) or a checkpoint. Out on stdout: the
merged, self-contained spec as YAML (``--origins``: an aligned ``# file:line`` comment on every
line, ``--set KEY=VALUE`` for overrides) or JSON (``--origins``: ``{"spec": ..., "origins":
{path: origin}}``). For a checkpoint: its metadata (epoch, versions, fingerprint, dtype,
parameter count) as ``#`` comments, or a ``"checkpoint"`` object in JSON, then the embedded
spec — read from the file without building the model or reading its tensors.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import UsageError
from .common import EXIT_OK, add_search_path_argument, add_set_argument, parse_set, print_warnings


def _checkpoint_header(meta: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items())
    params = meta.get("parameters")
    lines = [
        f"checkpoint: {meta['path']} ({meta['kind']})",
        f"epoch: {meta['epoch'] if meta['epoch'] is not None else '-'}",
        f"fingerprint: {meta['fingerprint'] or 'not recorded'}",
        f"dtype: {meta['dtype'] or 'not recorded'}",
        f"parameters: {f'{params:,}' if isinstance(params, int) else 'not recorded'}",
        f"tensors: {meta['tensors']}",
        f"versions: {versions or 'not recorded'}",
    ]
    return "".join(f"# {line}\n" for line in lines)


def cmd_show(args: argparse.Namespace) -> int:
    from ..frontend.origins import origins_map, yaml_with_origins
    from ..frontend.source import from_data
    from ..frontend.yamlout import dump_yaml
    from ..io.checkpoint import is_checkpoint_path

    if is_checkpoint_path(args.spec):
        from ..frontend.fingerprint import fingerprint
        from ..io.checkpoint import inspect_checkpoint

        if args.set or args.search_path:
            raise UsageError("show of a checkpoint takes no --set or --search-path: it prints what the file holds")
        summary = inspect_checkpoint(args.spec)
        meta = summary.metadata()
        actual = fingerprint(summary.spec)
        if meta["fingerprint"] is not None and meta["fingerprint"] != actual:
            print(
                f"netspec: warning: {summary.path}: the embedded spec's fingerprint is {actual}, not the recorded "
                f"{meta['fingerprint']} (was the file edited?)",
                file=sys.stderr,
            )
        source = from_data(summary.spec, summary.path)
        if args.format == "json":
            out: dict[str, Any] = {"checkpoint": meta, "spec": summary.spec}
            if args.origins:
                out["origins"] = {k: summary.path for k in origins_map(source)}
            sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
        else:
            body = yaml_with_origins(source) if args.origins else dump_yaml(summary.spec)
            if args.origins:  # every value comes from the one file
                body = "".join(line.split("  # ")[0].rstrip() + f"  # {summary.path}\n" for line in body.splitlines())
            sys.stdout.write(_checkpoint_header(meta) + body)
        return EXIT_OK

    from ..spec import read

    spec = read(args.spec, parse_set(args.set), search_path=args.search_path)
    print_warnings(spec.warnings)
    if args.format == "json":
        if args.origins:
            out = {"spec": spec.to_dict(), "origins": origins_map(spec.source), "fingerprint": spec.fingerprint}
            sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(spec.to_json())
    else:
        sys.stdout.write(yaml_with_origins(spec.source) if args.origins else spec.to_yaml())
    return EXIT_OK


def add_parsers(subparsers: Any) -> None:
    """Add ``show`` to ``netspec``'s subcommands."""
    s = subparsers.add_parser("show", help="the merged spec (of a spec file or a checkpoint)")
    s.add_argument("spec", help="spec file, or a checkpoint (.pt, .safetensors, ...)")
    s.add_argument("--origins", action="store_true", help="file:line of every value (--set for overrides)")
    s.add_argument("--format", choices=("yaml", "json"), default="yaml")
    add_set_argument(s, "override a value after merging, e.g. vars.width=128")
    add_search_path_argument(s)
    s.set_defaults(run=cmd_show)


__all__ = ["add_parsers", "cmd_show"]
