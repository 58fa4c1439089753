"""Regenerate the pictures under docs/images (tests/test_draw.py checks they match).

Run: python bench/docs_pictures.py   (the SVG needs Graphviz's dot; the .dot file needs nothing)
"""

from __future__ import annotations

from pathlib import Path

import netspec
from netspec.viz import render
from netspec.viz.formats import render_svg

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    images = ROOT / "docs" / "images"
    images.mkdir(parents=True, exist_ok=True)
    dot = render(netspec.read(ROOT / "specs" / "resnet18.yaml"), ".dot")
    (images / "resnet18.dot").write_text(dot, encoding="utf-8")
    (images / "resnet18.svg").write_text(render_svg(dot), encoding="utf-8")
    print(f"wrote {images / 'resnet18.dot'} and {images / 'resnet18.svg'}")


if __name__ == "__main__":
    main()
