"""The search path: the folders a spec may read other files from, and the checks on every path it names.

In: the folders (``search_path=[...]``, ``--search-path DIR``; default: the top-level spec's folder),
then a path as a spec wrote it (``extends``, ``imports``, ``init: from:``) with the file and spec path
that wrote it. Out: the file's display name (as the user would write it) and real path, or a located
``Problem``: absolute paths (for extends/imports), ``..`` leading out of the search path, symlinks
leading out of it, missing files (with "did you mean") and non-regular files (folders, FIFOs,
devices; refused before anything is opened). Nothing is read here. No torch.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Problem, SpecPath, did_you_mean
from .scalars import kind_of
from .source import Source

_HINT = "pass the folder that holds it with search_path=[...] (CLI: --search-path DIR)"


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives on Windows
        return False


def default_search_path(source: Source) -> list[str]:
    """The top-level spec's folder (the working directory for a dict)."""
    if source.text is None or source.filename.startswith("<"):
        return [os.getcwd()]
    return [os.path.dirname(os.path.abspath(source.filename))]


@dataclass(frozen=True)
class SearchPath:
    roots: tuple[str, ...]  # real paths of the folders
    lexical_roots: tuple[str, ...]  # the same, absolute with symlinks kept (for the `..` check)

    @classmethod
    def of(cls, folders: Sequence[str]) -> SearchPath:
        return cls(tuple(os.path.realpath(f) for f in folders), tuple(os.path.abspath(f) for f in folders))

    def resolve(self, naming: Source, path: SpecPath, value: Any, what: str) -> tuple[str, str] | Problem:
        """The (display name, real path) of the file ``value`` (written at ``path`` of ``naming``) names, or the
        Problem saying why it may not be read."""
        if not isinstance(value, str) or not value.strip():
            got = f"{kind_of(value)} {value!r}" if not isinstance(value, str) else "an empty string"
            return naming.problem(path, f"{what} takes a file path (or a list of them), got {got}")
        if os.path.isabs(value) or value.startswith("~"):
            hint = "write the path relative to the file that names it, inside the search path"
            return naming.problem(path, f"absolute path {value!r} is not allowed in {what}", hint=hint)
        here = os.path.dirname(naming.filename)
        display = os.path.normpath(os.path.join(here, value))
        lexical = os.path.abspath(display)
        roots_text = ", ".join(self.lexical_roots)
        if not any(_inside(lexical, root) for root in self.lexical_roots):
            message = f"{what} path {value!r} leads out of the search path ({roots_text}) to {lexical}"
            return naming.problem(path, message, hint=_HINT)
        real = os.path.realpath(lexical)
        if not any(_inside(real, root) for root in self.roots):
            message = f"{what} path {value!r} is a symlink leading out of the search path ({roots_text}) to {real}"
            return naming.problem(path, message)
        try:
            info = os.stat(real)
        except FileNotFoundError:
            folder = os.path.dirname(real)
            siblings = os.listdir(folder) if os.path.isdir(folder) else []
            hint = did_you_mean(os.path.basename(real), siblings) or None
            return naming.problem(path, f"{what} file {display} not found", hint=hint)
        except OSError as err:
            return naming.problem(path, f"cannot read {what} file {display}: {err.strerror}")
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            return naming.problem(path, f"{what} file {display} is {kind}")
        return display, real

    def check_init_paths(self, source: Source) -> list[Problem]:
        """``init: from:`` files must lie inside the search path too (by name: nothing is read here). A
        relative one is relative to the spec's folder; one written with ``${...}`` is checked when it runs."""
        init = source.data.get("init") if isinstance(source.data, dict) else None
        here = os.path.dirname(source.filename) if source.text is not None else os.curdir
        roots_text = ", ".join(self.lexical_roots)
        problems = []
        for i, rule in enumerate(init if isinstance(init, list) else []):
            value = rule.get("from") if isinstance(rule, dict) else None
            if not isinstance(value, str) or "${" in value:
                continue
            path = os.path.abspath(os.path.join(here, os.path.expanduser(value)))
            where = ("init", i, "from")
            if not any(_inside(path, root) for root in self.lexical_roots):
                message = f"init: from: {value!r} is outside the search path ({roots_text})"
                problems.append(source.problem(where, message, hint=_HINT))
            elif not any(_inside(os.path.realpath(path), root) for root in self.roots):
                message = f"init: from: {value!r} is a symlink leading out of the search path ({roots_text})"
                problems.append(source.problem(where, message))
        return problems


__all__ = ["SearchPath", "default_search_path"]
