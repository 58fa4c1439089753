"""Regenerate the pictures of the docs (tests/test_draw.py and tests/test_schedule.py check they match).

Run: python bench/docs_pictures.py
- docs/images/resnet18.dot and .svg (the SVG needs Graphviz's dot)
- the Mermaid block of docs/cli.md (LeNet-5)
- docs/images/gpt_block_lr.svg (needs matplotlib: pip install 'netspec[plot]')
"""

from __future__ import annotations

import re
from pathlib import Path

import netspec
from netspec.schedule import compute, plot
from netspec.viz import render
from netspec.viz.formats import render_svg

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
CLI_DOC = ROOT / "docs" / "cli.md"
MERMAID_BLOCK = re.compile(r"(```mermaid\n)(.*?)(```)", re.S)
LR_STEPS = 1500


def lenet_mermaid() -> str:
    return render(netspec.read(ROOT / "specs" / "lenet5.yaml"), ".mmd", depth=1)


def gpt_schedule_svg() -> bytes:
    return plot(compute(netspec.read(ROOT / "specs" / "gpt_block.yaml"), LR_STEPS), Path("lr.svg"))


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    dot = render(netspec.read(ROOT / "specs" / "resnet18.yaml"), ".dot")
    (IMAGES / "resnet18.dot").write_text(dot, encoding="utf-8")
    (IMAGES / "resnet18.svg").write_text(render_svg(dot), encoding="utf-8")
    text = CLI_DOC.read_text(encoding="utf-8")
    CLI_DOC.write_text(MERMAID_BLOCK.sub(lambda m: m.group(1) + lenet_mermaid() + m.group(3), text), encoding="utf-8")
    (IMAGES / "gpt_block_lr.svg").write_bytes(gpt_schedule_svg())
    print(f"wrote {IMAGES}/resnet18.dot, resnet18.svg, gpt_block_lr.svg and the Mermaid block of {CLI_DOC}")


if __name__ == "__main__":
    main()
