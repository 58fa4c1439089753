"""spec.fingerprint: what must not change it (spelling) and what must (values, meaningful order)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import netspec
from netspec.frontend.fingerprint import canonical_json, fingerprint
from tests.specfiles import write_spec_file

SPEC = """\
netspec: 1
seed: 0
vars: {width: 8}
input: {shape: [4]}
model:
  type: Sequential
  layers:
    fc1: {type: Linear, out_features: "${width}", bias: true}
    act: ReLU
    fc2: {type: Linear, out_features: 3}
init:
  - {type: Linear, weight: {fn: normal, std: 0.02}}
  - {match: fc2, bias: zeros}
optimizer: {type: AdamW, lr: 1.0e-3, weight_decay: 0.01}
"""

# The same spec with comments, other quoting, other number spellings, argument and section order
# shuffled, and JSON-ish flow style: the data is identical.
RESPELLED = """\
# a comment
optimizer:   # sections in another order
  weight_decay: 1e-2
  lr: 0.001
  type: 'AdamW'
model:
  type: "Sequential"
  layers:
    fc1: {bias: true, out_features: '${width}', type: Linear}   # arguments reordered
    act: 'ReLU'
    fc2:
      out_features: 3
      type: Linear
vars: {"width": 8}
input: {shape: [4]}
init:
  - {weight: {std: 2.0e-2, fn: normal}, type: Linear}
  - {bias: zeros, match: fc2}
seed: 0
netspec: 1
"""


def _fp(tmp_path: Path, text: str, name: str = "spec.yaml") -> str:
    return netspec.read(write_spec_file(tmp_path, text, name)).fingerprint


def test_fingerprint_is_sha256_of_the_documented_canonical_form(tmp_path: Path) -> None:
    spec = netspec.read(write_spec_file(tmp_path, SPEC))
    text = canonical_json(spec.to_dict())
    assert spec.fingerprint == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert text.startswith('{"init":[')  # top-level sections sorted
    assert '"layers":{"fc1":' in text and text.index('"act":') < text.index('"fc2":')  # layer order kept
    assert json.loads(text) == spec.to_dict()


def test_spelling_does_not_change_the_fingerprint(tmp_path: Path) -> None:
    assert _fp(tmp_path, SPEC, "a.yaml") == _fp(tmp_path, RESPELLED, "b.yaml")


def test_json_and_yaml_of_one_spec_agree(tmp_path: Path) -> None:
    spec = netspec.read(write_spec_file(tmp_path, SPEC))
    (tmp_path / "spec.json").write_text(spec.to_json(), encoding="utf-8")
    assert netspec.read(tmp_path / "spec.json").fingerprint == spec.fingerprint


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("vars: {width: 8}", "vars: {width: 9}"),  # a value
        ("lr: 1.0e-3", "lr: 1.0e-4"),
        ("bias: true}", "bias: false}"),
        ("seed: 0", "seed: 1"),
        # the children of a layers: mapping carry order (module order, state_dict order)
        (
            "    act: ReLU\n    fc2: {type: Linear, out_features: 3}",
            "    fc2: {type: Linear, out_features: 3}\n    act: ReLU",
        ),
        # so does the list of init rules (later rules win)
        (
            "  - {type: Linear, weight: {fn: normal, std: 0.02}}\n  - {match: fc2, bias: zeros}",
            "  - {match: fc2, bias: zeros}\n  - {type: Linear, weight: {fn: normal, std: 0.02}}",
        ),
    ],
)
def test_value_and_order_changes_change_the_fingerprint(tmp_path: Path, old: str, new: str) -> None:
    assert old in SPEC
    assert _fp(tmp_path, SPEC, "a.yaml") != _fp(tmp_path, SPEC.replace(old, new), "b.yaml")


def test_graph_forward_order_changes_the_fingerprint() -> None:
    graph = {
        "netspec": 1,
        "model": {
            "type": "Graph",
            "inputs": ["x"],
            "layers": {"a": "ReLU", "b": "Tanh"},
            "forward": ["h = a(x)", "y = b(x)"],
            "outputs": ["h", "y"],
        },
    }
    swapped = json.loads(json.dumps(graph))
    swapped["model"]["forward"].reverse()
    assert netspec.read(graph).fingerprint != netspec.read(swapped).fingerprint


def test_composed_spec_has_the_fingerprint_of_its_merged_form(tmp_path: Path) -> None:
    write_spec_file(tmp_path, SPEC, "base.yaml")
    child = write_spec_file(tmp_path, "netspec: 1\nextends: base.yaml\nvars: {width: 8}\n", "child.yaml")
    assert netspec.read(child).fingerprint == _fp(tmp_path, SPEC)
    assert netspec.read(child, overrides={"vars.width": 9}).fingerprint != _fp(tmp_path, SPEC)


_scalars = st.one_of(st.integers(-5, 5), st.floats(-2, 2, allow_nan=False), st.booleans(), st.text("ab", max_size=2))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), _scalars, min_size=1))
def test_order_free_mappings_hash_alike_in_any_order(args: dict[str, object]) -> None:
    shuffled = dict(reversed(list(args.items())))
    assert fingerprint({"optimizer": args}) == fingerprint({"optimizer": shuffled})
    if len(args) > 1:  # under layers: the same keys reordered are another model
        assert fingerprint({"layers": args}) != fingerprint({"layers": shuffled})
