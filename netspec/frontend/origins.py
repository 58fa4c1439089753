"""Where every value of a merged spec was written: ``netspec show --origins``.

In: a ``Source`` (merged by ``compose``, overrides applied). Out: ``origin(source, path)`` — the
``file:line`` that wrote a key or item (``--set KEY=VALUE`` for an override); ``origins_map``
— that for every leaf value, by dotted path; ``yaml_with_origins`` — the spec as YAML with the
origin of each line in an aligned ``# file:line`` comment, which netspec reads back as the same
data. File names are shown relative to the working directory when they lie below it. No torch.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import SpecPath, format_path
from .source import Source
from .yamlout import scalar_yaml

_OVERRIDE = " (--set "
_MAX_ALIGN = 72  # origins start at this column at most; longer lines push theirs further right


def show_file(name: str) -> str:
    """``name`` relative to the working directory when it lies below it, else as it is."""
    if not os.path.isabs(name):
        return name
    rel = os.path.relpath(name)
    return rel if not rel.startswith("..") else name


def origin(source: Source, path: SpecPath) -> str | None:
    """``file:line`` of the key or item at ``path`` (or its closest located parent); ``--set K=V`` for overrides."""
    loc = source.locate(path)
    if loc is None:
        return None
    if _OVERRIDE in loc.file:
        return loc.file[loc.file.index(_OVERRIDE) + 2 : -1]
    return f"{show_file(loc.file)}:{loc.line}"


def _is_leaf_list(value: list[Any]) -> bool:
    return all(not isinstance(v, (dict, list)) and not (isinstance(v, str) and len(v) > 24) for v in value)


def leaves(data: Any, path: SpecPath = ()) -> list[tuple[SpecPath, Any]]:
    """Every leaf value with its path; a list of short scalars (a shape) and an empty container are leaves."""
    out: list[tuple[SpecPath, Any]] = []
    todo: list[tuple[SpecPath, Any]] = [(path, data)]
    while todo:
        here, value = todo.pop()
        if isinstance(value, dict) and value:
            todo.extend(((*here, k), v) for k, v in reversed(value.items()))
        elif isinstance(value, list) and value and not _is_leaf_list(value):
            todo.extend(((*here, i), v) for i, v in reversed(list(enumerate(value))))
        else:
            out.append((here, value))
    return out


def origins_map(source: Source) -> dict[str, str | None]:
    """Dotted path -> origin, for every leaf value of the spec."""
    return {format_path(p): origin(source, p) for p, _ in leaves(source.data)}


def yaml_with_origins(source: Source) -> str:
    """The spec as block YAML, one value per line, each line's origin in an aligned trailing comment."""
    lines: list[tuple[str, str | None]] = []

    def emit(value: Any, path: SpecPath, indent: str, head: str) -> None:
        here = origin(source, path)
        if isinstance(value, dict) and value:
            if head:
                lines.append((indent[:-2] + head, here) if head.startswith("-") else (indent + head, here))
            inner = indent + "  " if head else indent
            for key, item in value.items():
                emit(item, (*path, key), inner, scalar_yaml(key) + ":")
        elif isinstance(value, list) and value and not _is_leaf_list(value):
            if head:
                lines.append((indent[:-2] + head, here) if head.startswith("-") else (indent + head, here))
            inner = indent + "  " if head else indent
            for i, item in enumerate(value):
                emit(item, (*path, i), inner + "  ", "-")
        else:
            text = scalar_yaml(value)
            line = f"{indent[:-2]}{head} {text}" if head.startswith("-") else f"{indent}{head} {text}".rstrip()
            lines.append((line if head else text, here))

    emit(source.data, (), "", "")
    width = min(max((len(text) for text, _ in lines), default=0), _MAX_ALIGN)
    out = []
    for text, where in lines:
        out.append(f"{text.ljust(width)}  # {where}" if where else text)
    return "\n".join(out) + "\n"


__all__ = ["leaves", "origin", "origins_map", "show_file", "yaml_with_origins"]
