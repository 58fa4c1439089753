"""``netspec.draw``: a spec's architecture as a picture (.dot, .mmd, .svg, .html).

In: a spec (path, dict or ``Spec``), an output path whose extension picks the format, a
depth and whether to expand repeats. Out: the file, written atomically; ``render`` returns
the text instead. See ``diagram`` (what is drawn) and ``formats`` (how it is written).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .diagram import Box, Cluster, Diagram, Edge, make_diagram
from .formats import DrawError, render_svg, to_dot, to_html, to_mermaid

FORMATS = (".dot", ".gv", ".mmd", ".svg", ".html")


def _format_of(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        shown = suffix or "no extension"
        raise DrawError(f"cannot draw to {os.fspath(path)!r} ({shown}): the formats are {', '.join(FORMATS)}")
    return suffix


def render(
    spec: Any, fmt: str = ".dot", depth: int | None = None, expand: bool = False, search_path: Any = None
) -> str:
    """The picture of ``spec`` as text in format ``fmt`` (``.dot``, ``.mmd``, ``.svg`` or ``.html``)."""
    from ..api import build
    from ..spec import Spec, read
    from ..summary import summarize_built

    fmt = fmt if fmt.startswith(".") else "." + fmt
    if fmt not in FORMATS:
        raise DrawError(f"unknown picture format {fmt!r}; the formats are {', '.join(FORMATS)}")
    spec = spec if isinstance(spec, Spec) else read(spec)
    diagram = make_diagram(spec, depth=depth, expand=expand)
    if fmt in (".dot", ".gv"):
        return to_dot(diagram)
    if fmt == ".mmd":
        return to_mermaid(diagram)
    svg = render_svg(to_dot(diagram))
    if fmt == ".svg":
        return svg
    summary = summarize_built(build(spec, device="meta"), depth=depth if depth is not None else diagram.depth)
    header, rows = summary.cells()
    return to_html(diagram, svg, header, rows, summary.footer_lines())


def draw(
    spec: str | os.PathLike[str] | Mapping[str, Any] | Any,
    path: str | os.PathLike[str],
    *,
    depth: int | None = None,
    expand: bool = False,
) -> Path:
    """Write the architecture of ``spec`` to ``path``; the extension picks the format. Returns the path."""
    from ..io.atomic import atomic_write

    fmt = _format_of(path)
    text = render(spec, fmt, depth=depth, expand=expand)
    out = Path(path)
    atomic_write(out, lambda fh: fh.write(text.encode("utf-8")))
    return out


__all__ = ["FORMATS", "Box", "Cluster", "Diagram", "DrawError", "Edge", "draw", "make_diagram", "render"]
