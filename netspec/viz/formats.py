"""A ``Diagram`` as text: Graphviz DOT, Mermaid, SVG (rendered by Graphviz's ``dot``) and one
self-contained HTML page (the SVG inline beside the build summary, nothing fetched).

In: a ``Diagram`` (and, for HTML, the summary rows). Out: the file's text. The DOT and Mermaid
writers need nothing installed; SVG and HTML run ``dot``, and say how to install it when absent.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess

from ..errors import NetspecError
from .diagram import Box, Cluster, Diagram

# Colours: layers blue, containers framed grey, frozen grey, eval dashed, tied orange, ops small and white.
_FILL = {"module": "#e8f0fe", "op": "#ffffff", "input": "#fff8e1", "output": "#fff8e1", "tensor": "#f3e5f5"}
_FROZEN_FILL = "#e0e0e0"
_TIED_COLOR = "#e65100"
DOT_TIMEOUT_S = 60


class DrawError(NetspecError):
    """A diagram could not be written (no Graphviz for .svg/.html, an unknown format)."""


def _count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def _box_lines(item: Box | Cluster) -> list[str]:
    """The text of a box or a cluster's title, one entry per line."""
    title = item.label + (f" ×{item.repeat}" if item.repeat > 1 else "")
    if isinstance(item, Box) and item.kind != "module":
        return [title]
    detail = item.type
    if item.params:
        detail += f" · {_count(item.params)} params" + (" each" if item.repeat > 1 else "")
    lines = [title, detail]
    if item.marks:
        lines.append(", ".join(item.marks))
    return lines


# -- DOT --------------------------------------------------------------------------------------------


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_box(box: Box, indent: str) -> str:
    attrs = {"label": "\n".join(_box_lines(box))}
    if box.kind == "op":
        attrs.update(shape="circle" if len(box.label) <= 2 else "ellipse", style="filled", margin="0.02")
    elif box.kind in ("input", "output"):
        attrs.update(shape="oval", style="filled")
    elif box.kind == "tensor":
        attrs.update(shape="note", style="filled")
    fill = _FROZEN_FILL if "frozen" in box.marks else _FILL[box.kind]
    attrs["fillcolor"] = fill
    styles = [attrs.get("style", "rounded,filled")]
    if "eval" in box.marks:
        styles.append("dashed")
    attrs["style"] = ",".join(styles)
    if "tied" in box.marks:
        attrs.update(color=_TIED_COLOR, penwidth="2")
    if box.repeat > 1:
        attrs["peripheries"] = "2"
    return f"{indent}{box.id} [" + ", ".join(f"{k}={_dot_quote(v)}" for k, v in attrs.items()) + "];"


def _dot_cluster(cluster: Cluster, indent: str, out: list[str], top: bool) -> None:
    if not top:
        out.append(f"{indent}subgraph {cluster.id} {{")
        style = "rounded,dashed" if "eval" in cluster.marks else "rounded"
        out.append(f"{indent}  label={_dot_quote(' · '.join(_box_lines(cluster)))};")
        out.append(f'{indent}  style="{style}"; color="#9e9e9e"; fontsize=10;')
        if "frozen" in cluster.marks:
            out.append(f'{indent}  bgcolor="{_FROZEN_FILL}";')
        if cluster.repeat > 1:
            out.append(f"{indent}  penwidth=2;")
    inner = indent + ("  " if not top else "")
    for item in cluster.items:
        if isinstance(item, Cluster):
            _dot_cluster(item, inner, out, top=False)
        else:
            out.append(_dot_box(item, inner))
    if not top:
        out.append(f"{indent}}}")


def to_dot(diagram: Diagram) -> str:
    title = " · ".join(_box_lines(diagram.root))
    out = [
        f"digraph {_dot_quote(diagram.title)} {{",
        f'  graph [rankdir=TB, fontname="Helvetica", fontsize=12, labelloc=t, label={_dot_quote(title)},'
        " nodesep=0.25, ranksep=0.3];",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, height=0.3];',
        '  edge [fontname="Helvetica", fontsize=8, color="#616161", arrowsize=0.6];',
    ]
    _dot_cluster(diagram.root, "  ", out, top=True)
    for e in diagram.edges:
        label = f" [label={_dot_quote(e.label)}]" if e.label else ""
        out.append(f"  {e.src} -> {e.dst}{label};")
    out.append("}")
    return "\n".join(out) + "\n"


# -- Mermaid ----------------------------------------------------------------------------------------


def _mmd_text(text: str) -> str:
    """Mermaid labels in double quotes: quotes and markup characters as entity codes."""
    return html.escape(text, quote=True).replace("&quot;", "#quot;")


_MMD_SHAPES = {"op": ('(("', '"))'), "input": ('(["', '"])'), "output": ('(["', '"])')}


def _mmd_cluster(cluster: Cluster, indent: str, out: list[str], classes: dict[str, list[str]]) -> None:
    for item in cluster.items:
        if isinstance(item, Cluster):
            out.append(f'{indent}subgraph {item.id}["{_mmd_text(" · ".join(_box_lines(item)))}"]')
            out.append(f"{indent}  direction TB")
            _mmd_cluster(item, indent + "  ", out, classes)
            out.append(f"{indent}end")
            continue
        text = "<br/>".join(_mmd_text(line) for line in _box_lines(item))
        shape = (
            ('(("', '"))')
            if item.kind == "op"
            else (('(["', '"])') if item.kind in ("input", "output") else ('["', '"]'))
        )
        out.append(f"{indent}{item.id}{shape[0]}{text}{shape[1]}")
        for mark in item.marks:
            classes.setdefault(mark, []).append(item.id)
        if item.repeat > 1:
            classes.setdefault("repeat", []).append(item.id)


def to_mermaid(diagram: Diagram) -> str:
    out = ["---", f"title: {_mmd_text(' · '.join(_box_lines(diagram.root)))}", "---", "flowchart TB"]
    classes: dict[str, list[str]] = {}
    _mmd_cluster(diagram.root, "  ", out, classes)
    for e in diagram.edges:
        out.append(f'  {e.src} -->|"{_mmd_text(e.label)}"| {e.dst}' if e.label else f"  {e.src} --> {e.dst}")
    styles = {
        "frozen": f"fill:{_FROZEN_FILL}",
        "eval": "stroke-dasharray: 4 3",
        "tied": f"stroke:{_TIED_COLOR},stroke-width:2px",
        "repeat": "stroke-width:3px",
    }
    for mark, ids in classes.items():
        out.append(f"  classDef {mark} {styles[mark]}")
        out.append(f"  class {','.join(ids)} {mark}")
    return "\n".join(out) + "\n"


# -- SVG and HTML -----------------------------------------------------------------------------------

INSTALL_HINT = (
    "install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; conda: conda "
    "install graphviz), or write .dot or .mmd, which need nothing: netspec draw SPEC -o arch.dot"
)


def render_svg(dot_text: str) -> str:
    """``dot -Tsvg``; a DrawError naming the fix when Graphviz is not installed or fails."""
    exe = shutil.which("dot")
    if exe is None:
        raise DrawError(f"rendering SVG needs Graphviz's `dot`, which is not on PATH: {INSTALL_HINT}")
    try:
        proc = subprocess.run(
            [exe, "-Tsvg"], input=dot_text.encode("utf-8"), capture_output=True, timeout=DOT_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise DrawError(f"Graphviz's dot took more than {DOT_TIMEOUT_S} s; try a smaller --depth") from None
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DrawError(f"Graphviz's dot failed: {message[0] if message else f'exit {proc.returncode}'}")
    return proc.stdout.decode("utf-8")


def _inline_svg(svg: str) -> str:
    """The SVG as an element inside HTML: no XML prolog, DOCTYPE (which names a DTD URL) or namespace URLs."""
    svg = re.sub(r"<\?xml[^>]*\?>\s*", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg, flags=re.S)
    svg = re.sub(r"<!--.*?-->\s*", "", svg, flags=re.S)
    return re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg)


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.5rem; color: #212121; }
h1 { font-size: 1.3rem; margin: 0 0 1rem 0; }
.layout { display: flex; gap: 2rem; align-items: flex-start; flex-wrap: wrap; }
.diagram { flex: 1 1 480px; overflow: auto; border: 1px solid #e0e0e0; border-radius: 6px; padding: .5rem;
  text-align: center; }
.diagram svg { max-width: 100%; height: auto; }
.summary { flex: 0 1 auto; overflow-x: auto; }
table { border-collapse: collapse; font-size: .8rem; }
th, td { padding: .2rem .6rem; text-align: right; border-bottom: 1px solid #eeeeee; white-space: nowrap; }
th { background: #fafafa; position: sticky; top: 0; }
td:first-child, th:first-child { text-align: left; font-family: ui-monospace, Menlo, Consolas, monospace;
  white-space: pre; }
tfoot td { font-weight: 600; text-align: left; }
.legend { font-size: .8rem; color: #616161; margin-top: .5rem; text-align: left; }
tfoot td { white-space: normal; }
"""


def to_html(diagram: Diagram, svg: str, header: list[str], rows: list[list[str]], footer: list[str]) -> str:
    """One page: the diagram (inline SVG) beside the summary table; no script, no fetch."""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    foot = "".join(f'<tr><td colspan="{len(header)}">{esc(line)}</td></tr>' for line in footer)
    legend = (
        "Boxes: layers (parameter counts); frames: containers, Graphs and blocks; ×N: copies of a repeat; "
        "grey: frozen; dashed: kept in eval mode; orange: tied parameters. Edge labels: output shapes (B = batch)."
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(diagram.title)} — netspec</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{esc(diagram.title)}</h1>
<div class="layout">
<div class="diagram">
{_inline_svg(svg)}
<p class="legend">{esc(legend)}</p>
</div>
<div class="summary">
<table>
<thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody>
<tfoot>{foot}</tfoot>
</table>
</div>
</div>
</body>
</html>
"""
