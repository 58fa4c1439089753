"""Unquoted ``${...}`` inside YAML flow collections: read as those scalars, every position unchanged."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

import netspec
from netspec.frontend import exprs
from netspec.frontend.refscan import mask
from netspec.frontend.source import load_text
from tests.specfiles import write_spec_file


def test_flow_mapping_and_sequence_values_build_the_hand_written_model(tmp_path: Path) -> None:
    path = write_spec_file(
        tmp_path,
        """
        netspec: 1
        vars: {c: 4, h: 12, w: 10}
        input: {shape: [3, ${h}, ${w}]}
        model:
          type: Sequential
          layers:
            - {type: Conv2d, out_channels: ${c * 2}, kernel_size: 3, padding: ${max(1, c // 4)}}
            - {type: BatchNorm2d}
            - {type: AdaptiveAvgPool2d, output_size: [${h // 6}, ${w // 5}]}
            - {type: Flatten}
            - {type: Linear, out_features: ${c}}
        """,
    )
    model = netspec.build(path).model
    hand = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.Linear(32, 4)
    )
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in hand.state_dict().items()}
    hand.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 12, 10)
    torch.testing.assert_close(model.eval()(x), hand.eval()(x))
    spec = netspec.read(path)
    assert spec.to_dict()["input"]["shape"] == [3, "${h}", "${w}"]


def test_quoted_refs_escapes_comments_and_block_scalars_keep_their_meaning() -> None:
    text = (
        "a: {x: '${1 + 1}', y: \"n${2}\", z: $${lit}, q: ${'}' + '{'}}  # ${not a value\n"
        "doc: |\n"
        "  it's ${q} 'unbalanced\n"
        "  and {open\n"
        "b: [${1}, ${2}${3}, name${4}x, '$${5}']\n"
    )
    data = load_text(text).data
    assert data == {
        "a": {"x": "${1 + 1}", "y": "n${2}", "z": "$${lit}", "q": "${'}' + '{'}"},
        "doc": "it's ${q} 'unbalanced\nand {open\n",
        "b": ["${1}", "${2}${3}", "name${4}x", "$${5}"],
    }
    assert exprs.substitute(data["a"], {}) == {"x": 2, "y": "n2", "z": "${lit}", "q": "}{"}
    assert exprs.substitute(data["b"], {}) == [1, "23", "name4x", "${5}"]


def test_errors_inside_and_after_unquoted_refs_keep_their_columns(tmp_path: Path) -> None:
    line = "    - {type: Conv2d, out_channels: ${c * 2}, kernel_size: ${k}, strid: 2}"
    path = write_spec_file(
        tmp_path,
        f"""
        netspec: 1
        vars: {{c: 4}}
        input: {{shape: [3, 8, 8]}}
        model:
          type: Sequential
          layers:
        {line}
        """,
    )
    with pytest.raises(netspec.SpecError) as info:
        netspec.build(path)
    text = str(info.value)
    assert f"{path}:7:{line.index('kernel_size') + 1}: model.layers.0.kernel_size: unknown name 'k'" in text
    assert f"{path}:7:{line.index('strid') + 1}: model.layers.0.strid: Conv2d has no argument 'strid'" in text


def test_yaml_syntax_error_after_an_unquoted_ref_points_at_the_original_column() -> None:
    line = "model: {type: Linear, out_features: ${n * 2}, in_features: [1, 2}"
    with pytest.raises(netspec.SpecError) as info:
        load_text(f"netspec: 1\n{line}\n", "spec.yaml")
    problem = info.value.problems[0]
    assert problem.location is not None
    assert (problem.location.line, problem.location.column) == (2, line.index("}", line.index("[")) + 1)
    assert problem.message == "did not find expected ',' or ']' in the [...] opened at line 2, column 60"
    assert "quote a value that holds ','" in (problem.hint or "")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "model: {type: ReLU, inplace: true",
            "did not find expected ',' or '}' in the {...} opened at line 2, column 8",
        ),
        (
            "model: {type: Linear, name: a: b}",
            "did not find expected ',' or '}' in the {...} opened at line 2, column 8",
        ),
        ("model: [ReLU, {type: Tanh]", "did not find expected ',' or '}' in the {...} opened at line 2, column 15"),
    ],
)
def test_other_flow_mistakes_get_a_hint(line: str, message: str) -> None:
    with pytest.raises(netspec.SpecError) as info:
        load_text(f"netspec: 1\n{line}\n", "spec.yaml")
    problem = info.value.problems[0]
    assert problem.message == message
    assert problem.hint is not None and "${...} may stay unquoted" in problem.hint


# -- fuzzing ------------------------------------------------------------------------------------------

_YAMLISH = st.text(alphabet=string.printable + "${}[]:,'\"#|>-é\u2028", max_size=200)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_YAMLISH)
def test_mask_keeps_every_position_and_restores_the_text(text: str) -> None:
    masked = mask(text)
    assert len(masked.text) == len(text)
    kept = [True] * len(text)
    for start, end in masked.spans:
        assert text[start:end].lstrip("$").startswith("{") and text[end - 1] == "}"
        kept[start:end] = [False] * (end - start)
    assert all(a == b for a, b, k in zip(masked.text, text, kept, strict=True) if k)
    assert masked.restore(masked.text, 0, len(text)) == text


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_YAMLISH)
def test_arbitrary_text_is_read_or_refused_with_a_spec_error(text: str) -> None:
    try:
        load_text(text, "fuzz.yaml")
    except netspec.SpecError as err:
        assert all(p.location is None or p.location.line >= 1 for p in err.problems)


_EXPR = st.from_regex(
    r"[a-z][a-z0-9_]{0,5}( [-+*] [0-9]{1,3})?|\{'k': [0-9]\}\['k'\]|'[}{\]\[, ]{1,4}'", fullmatch=True
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(_EXPR, min_size=1, max_size=5), st.booleans())
def test_generated_flow_collections_read_each_ref_as_written(exprs_: list[str], as_mapping: bool) -> None:
    refs = [f"${{{e}}}" for e in exprs_]
    body = ", ".join(f"k{i}: {r}" for i, r in enumerate(refs)) if as_mapping else ", ".join(refs)
    text = f"top: {'{' if as_mapping else '['}{body}{'}' if as_mapping else ']'}\nafter: [1, 2\n"
    with pytest.raises(netspec.SpecError) as info:  # the syntax error after the refs keeps its column
        load_text(text, "gen.yaml")
    loc = info.value.problems[0].location
    assert loc is not None and loc.line == 3
    data = load_text(text.replace("[1, 2\n", "[1, 2]\n"), "gen.yaml").data
    assert data["top"] == ({f"k{i}": r for i, r in enumerate(refs)} if as_mapping else refs)
