"""``netspec draw`` / ``netspec.draw``: what each format shows (every top-level child, a residual's two
incoming edges, ×N folding, shape labels, frozen/eval/tied marks), that SVG is valid XML and HTML
fetches nothing, and that the docs picture matches regeneration."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch.nn as nn
from conftest import ROOT, SPECS, folder_state

import netspec
from netspec.viz import DrawError, draw, make_diagram, render
from netspec.viz.diagram import Cluster, Diagram

RESNET18 = SPECS / "resnet18.yaml"
HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot is not installed (apt-get install graphviz)")
DOCS_DOT = ROOT / "docs" / "images" / "resnet18.dot"
DOCS_SVG = ROOT / "docs" / "images" / "resnet18.svg"


def labels(diagram: Diagram) -> dict[str, str]:
    """Box id -> its first label line, for every box."""
    return {b.id: b.label for b in diagram.boxes()}


def find(diagram: Diagram, label: str) -> str:
    ids = [b.id for b in diagram.boxes() if b.label == label]
    assert len(ids) == 1, f"{label!r}: {ids}"
    return ids[0]


def incoming(diagram: Diagram, box_id: str) -> list[str]:
    return [e.src for e in diagram.edges if e.dst == box_id]


def test_every_top_level_child_is_drawn_in_order_with_shapes() -> None:
    diagram = make_diagram(netspec.read(RESNET18))
    children = ["conv1", "bn1", "relu", "maxpool", "avgpool", "fc"]
    shown = [b.label for b in diagram.boxes()]
    for child in children:
        assert child in shown
    frames = [c.label for c in diagram.clusters()]
    assert frames[1:] == ["layer1", "layer2", "layer3", "layer4"]  # the first is the model itself
    # The edge into conv1 carries the input's shape, the edge out of it conv1's output (batch shown as B).
    conv1 = find(diagram, "conv1")
    into = [e for e in diagram.edges if e.dst == conv1]
    out = [e for e in diagram.edges if e.src == conv1]
    assert [e.label for e in into] == ["[B, 3, 224, 224]"]
    assert [e.label for e in out] == ["[B, 64, 112, 112]"]
    assert [e.label for e in diagram.edges if e.dst == find(diagram, "fc")] == ["[B, 512]"]


def test_a_repeat_is_one_box_marked_times_n_and_expand_shows_the_copies() -> None:
    spec = netspec.read(RESNET18)
    folded = make_diagram(spec)
    layer1 = next(c for c in folded.clusters() if c.label == "layer1")
    assert len(layer1.items) == 1 and layer1.items[0].repeat == 2  # layer1: {repeat: 2, layer: BasicBlock}
    assert "layer1.0 ×2" in render(spec, ".dot")
    expanded = make_diagram(spec, expand=True)
    layer1 = next(c for c in expanded.clusters() if c.label == "layer1")
    assert [i.label for i in layer1.items] == ["layer1.0", "layer1.1"]
    assert all(i.repeat == 1 for i in layer1.items)
    # layer2's two blocks were written separately (a DownBlock, then a BasicBlock): never folded.
    layer2 = next(c for c in folded.clusters() if c.label == "layer2")
    assert [(i.type, i.repeat) for i in layer2.items] == [("DownBlock", 1), ("BasicBlock", 1)]


def test_a_residual_shows_its_two_incoming_edges() -> None:
    diagram = make_diagram(netspec.read(RESNET18), depth=3)
    block = next(c for c in diagram.clusters() if c.label == "layer1.0" and c.repeat == 2)
    plus = [i for i in block.items if not isinstance(i, Cluster) and i.label == "+"]
    assert len(plus) == 1
    sources = {labels(diagram)[s] for s in incoming(diagram, plus[0].id)}
    assert sources == {"bn2", "x"}  # h = bn2(conv2(h)); y = relu(h + x)


def test_depth_opens_blocks_and_folds_by_default_to_stay_readable(write_spec: Callable[..., Path]) -> None:
    spec = netspec.read(RESNET18)
    assert make_diagram(spec, depth=1).depth == 1
    shallow = sum(1 for _ in make_diagram(spec, depth=1).boxes())
    deep = sum(1 for _ in make_diagram(spec, depth=4).boxes())
    assert shallow < deep
    # 100 layers in 25 distinct blocks: the default diagram folds a level instead of drawing 100 boxes.
    body = "\n".join(
        f"    b{k}: {{type: Sequential, layers: [{{type: Linear, out_features: {k + 8}}}, ReLU, "
        f"{{type: Linear, out_features: {k + 8}}}, Tanh]}}"
        for k in range(25)
    )
    path = write_spec(f"netspec: 1\ninput: {{shape: [4]}}\nmodel:\n  type: Sequential\n  layers:\n{body}\n")
    diagram = make_diagram(netspec.read(path))
    boxes = sum(1 for _ in diagram.boxes())
    assert diagram.depth == 1 and boxes == 25 + 2, (diagram.depth, boxes)  # the blocks, input and output
    assert sum(1 for _ in make_diagram(netspec.read(path), depth=2).boxes()) == 100 + 2


def test_graph_routing_and_op_nodes_come_from_the_statements() -> None:
    diagram = make_diagram(netspec.read(SPECS / "unet.yaml"))
    cat_boxes = [b for b in diagram.boxes() if b.label == "cat"]
    assert len(cat_boxes) == 3  # three skip connections
    for box in cat_boxes:
        assert len(incoming(diagram, box.id)) == 2  # the upsampled path and the skip
    # pool is one child called three times: three boxes, each edge with its own shape.
    pools = [b for b in diagram.boxes() if b.label == "pool"]
    assert len(pools) == 3
    shapes = [next(e.label for e in diagram.edges if e.src == p.id) for p in pools]
    assert len(set(shapes)) == 3, shapes


def test_frozen_eval_and_tied_parts_are_marked(write_spec: Callable[..., Path]) -> None:
    path = write_spec("""
        netspec: 1
        input: {shape: [3, 8, 8]}
        model:
          type: Sequential
          layers:
            conv: {type: Conv2d, out_channels: 4, kernel_size: 3}
            bn: BatchNorm2d
            flat: Flatten
            fc: {type: Linear, out_features: 2}
        freeze: [conv, {type: BatchNorm2d, eval: true}]
        """)
    diagram = make_diagram(netspec.read(path), depth=1)
    marks = {b.label: b.marks for b in diagram.boxes()}
    assert "frozen" in marks["conv"] and "eval" in marks["bn"] and marks["fc"] == ()
    dot = render(netspec.read(path), ".dot")
    assert re.search(r'label="conv\\nConv2d · 112 params\\nfrozen", fillcolor="#e0e0e0"', dot), dot
    mmd = render(netspec.read(path), ".mmd")
    assert "classDef frozen" in mmd and "classDef eval" in mmd


def test_tied_modules_are_found_by_shared_tensors() -> None:
    from netspec.viz.diagram import _tied_modules

    emb, head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    model = nn.ModuleDict({"emb": emb, "other": nn.Linear(4, 4), "head": head})
    assert _tied_modules(model) == {"emb", "head"}


def test_dot_and_mermaid_texts(tmp_path: Path) -> None:
    spec = netspec.read(RESNET18)
    dot = render(spec, ".dot")
    assert dot.startswith('digraph "resnet18" {') and dot.rstrip().endswith("}")
    assert dot.count("subgraph cluster") == 4  # Graphviz frames only subgraphs named cluster*
    assert "-> " in dot and '[label="[B, 64, 56, 56]"]' in dot
    mmd = render(spec, ".mmd")
    assert mmd.splitlines()[3] == "flowchart TB"
    assert mmd.count("subgraph ") == 4 and mmd.count("\n  end") + mmd.count("\n    end") >= 4
    assert '-->|"[B, 64, 56, 56]"|' in mmd
    out = draw(spec, tmp_path / "arch.mmd")
    assert out.read_text() == mmd


@needs_dot
def test_svg_is_valid_xml_with_a_node_per_box(tmp_path: Path) -> None:
    out = draw(RESNET18, tmp_path / "arch.svg")
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    texts = {t.text for t in root.iter() if t.tag.endswith("text")}
    assert {"conv1", "fc", "maxpool", "layer1.0 ×2"} <= texts


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "xlink:href") and v]


@needs_dot
def test_html_is_one_self_contained_page_with_the_summary(tmp_path: Path) -> None:
    out = draw(RESNET18, tmp_path / "arch.html")
    text = out.read_text()
    parser = _Collector()
    parser.feed(text)
    assert "svg" in parser.tags and "table" in parser.tags and "script" not in parser.tags
    assert parser.urls == [] and "http://" not in text and "https://" not in text
    assert "conv1 (Conv2d)" in text and "Total params: 11,689,512" in text


def test_without_graphviz_svg_and_html_say_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    for suffix in (".svg", ".html"):
        with pytest.raises(DrawError) as info:
            draw(RESNET18, tmp_path / f"arch{suffix}")
        message = str(info.value)
        assert "Graphviz's `dot`" in message and "apt-get install graphviz" in message and ".dot or .mmd" in message
    assert folder_state(tmp_path) == {}


def test_unknown_format_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(DrawError, match=r"arch\.png.*the formats are \.dot, \.gv, \.mmd, \.svg, \.html"):
        draw(RESNET18, tmp_path / "arch.png")
    assert folder_state(tmp_path) == {}


def test_cli_draw(cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    code, out, err = cli("draw", RESNET18)
    assert code == 0 and out.startswith('digraph "resnet18"') and err == ""
    code, out, err = cli("draw", RESNET18, "-o", tmp_path / "a.mmd", "--depth", "3", "--expand")
    assert code == 0 and out == "" and "wrote" in err
    assert "layer1.1" in (tmp_path / "a.mmd").read_text()
    code, out, err = cli("draw", RESNET18, "-o", tmp_path / "a.txt")
    assert code == 1 and "the formats are" in err
    code, _, err = cli("draw", RESNET18, "--depth", "-1")
    assert code == 2


def test_docs_picture_matches_regeneration() -> None:
    """docs/images/resnet18.{dot,svg} are generated: `python bench/docs_pictures.py` rewrites them."""
    assert DOCS_DOT.read_text() == render(netspec.read(RESNET18), ".dot")
    if not HAS_DOT:
        pytest.skip("Graphviz's dot is not installed: the SVG half of this check needs it")
    committed = DOCS_SVG.read_text()
    version = subprocess.run(["dot", "-V"], capture_output=True, text=True, check=False).stderr
    made_by = re.search(r"Generated by graphviz version (\S+)", committed)
    if made_by is None or made_by.group(1) not in version:
        pytest.skip(f"docs SVG was made by Graphviz {made_by.group(1) if made_by else '?'}; this is {version}")
    from netspec.viz.formats import render_svg

    assert committed == render_svg(DOCS_DOT.read_text())


def _docs_pictures() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_pictures", ROOT / "bench" / "docs_pictures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_mermaid_block_matches_regeneration() -> None:
    pictures = _docs_pictures()
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    block = pictures.MERMAID_BLOCK.search(text)  # type: ignore[attr-defined]
    assert block is not None
    assert block.group(2) == pictures.lenet_mermaid()  # type: ignore[attr-defined]


def test_docs_schedule_picture_matches_regeneration() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    committed = (ROOT / "docs" / "images" / "gpt_block_lr.svg").read_bytes()
    made_by = re.search(rb"Matplotlib v(\S+),", committed)
    if made_by is None or made_by.group(1).decode() != matplotlib.__version__:
        pytest.skip(f"the docs plot was made by matplotlib {made_by.group(1) if made_by else '?'}")
    assert committed == _docs_pictures().gpt_schedule_svg()  # type: ignore[attr-defined]


def test_tie_and_eval_sections_are_marked(write_spec: Callable[..., Path]) -> None:
    path = write_spec("""
        netspec: 1
        input: {shape: [6], dtype: int64}
        model:
          type: Sequential
          layers:
            wte: {type: Embedding, num_embeddings: 10, embedding_dim: 4}
            norm: {type: LayerNorm, normalized_shape: 4}
            lm_head: {type: Linear, in_features: 4, out_features: 10, bias: false}
        tie: {lm_head.weight: wte.weight}
        eval: [norm]
        """)
    diagram = make_diagram(netspec.read(path))
    marks = {b.label: b.marks for b in diagram.boxes()}
    assert marks["wte"] == ("tied",) and marks["lm_head"] == ("tied",) and marks["norm"] == ("eval",)
    dot = render(netspec.read(path), ".dot")
    assert 'color="#e65100", penwidth="2"' in dot and "dashed" in dot
