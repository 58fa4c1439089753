"""Fuzzing: whatever the input, netspec answers with a result or a NetspecError, never another exception.

Hypothesis draws YAML and JSON text (free text and text built from the languages' own tokens), spec
trees, Graph statements and tampered checkpoints (bytes flipped, cut or inserted; payload fields
replaced). The seed is fixed (``derandomize=True``) and the example counts are sized for about a
minute on one core in CI; ``NETSPEC_FUZZ_EXAMPLES=N`` multiplies them for a longer local run.
"""

from __future__ import annotations

import io
import os
import string
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netspec
from netspec.frontend.source import load_text

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # large reprs of tensors
SCALE = max(1, int(os.environ.get("NETSPEC_FUZZ_EXAMPLES", "1")))


def fuzz(examples: int) -> Any:
    return settings(
        max_examples=examples * SCALE,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def only_netspec_errors(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; a NetspecError is a fine answer, anything else fails the test (with its traceback)."""
    try:
        return fn(*args, **kwargs)
    except netspec.NetspecError as err:
        str(err).encode("utf-8")  # printable: no lone surrogates survive formatting
        return err


# -- text ---------------------------------------------------------------------------------------------

YAML_TOKENS = [
    "\n", " ", "  ", "- ", ": ", "{", "}", "[", "]", ", ", "&a ", "*a", "!!str ", "!!python/object ", "? ", "|",
    ">", "#c", "'", '"', "---", "...", "<<: ", "${", "}", "$${x}", "0x1F", "0o17", "1e3", ".inf", ".nan", "~",
    "null", "true", "yes", "netspec", "model", "type", "Linear", "layers", "repeat", "layer", "vars", "in_features",
    "out_features", "4", "-1", "10**9", "\t", "\\u", "\\ud800", "\x1b", "é", "\u2028",
]  # fmt: skip
JSON_TOKENS = [
    "{", "}", "[", "]", ",", ":", '"a"', '"netspec"', '"model"', '"type"', '"Linear"', "1", "-0", "1e999", "0.5",
    "true", "null", "NaN", "Infinity", '"\\ud800"', '"\\u0000"', "  ", "\n", "'", "/", '"${x}"', "01", "1" * 30,
]  # fmt: skip


@fuzz(300)
@given(st.text(max_size=300))
def test_any_text_as_yaml(text: str) -> None:
    only_netspec_errors(load_text, text, "fuzz.yaml")


@fuzz(400)
@given(st.lists(st.sampled_from(YAML_TOKENS), max_size=60).map("".join))
def test_yaml_built_from_its_tokens(text: str) -> None:
    only_netspec_errors(load_text, text, "fuzz.yaml")


@fuzz(300)
@given(st.lists(st.sampled_from(JSON_TOKENS), max_size=60).map("".join))
def test_json_built_from_its_tokens(text: str) -> None:
    only_netspec_errors(load_text, text, "fuzz.json")


@fuzz(150)
@given(st.binary(max_size=200))
def test_any_bytes_as_a_spec_file(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "spec.yaml"
    path.write_bytes(data)
    only_netspec_errors(netspec.read, path)


# -- spec trees ----------------------------------------------------------------------------------------

KEYS = st.sampled_from(
    ["type", "layers", "repeat", "layer", "in_features", "out_features", "kernel_size", "num_layers", "inputs",
     "forward", "outputs", "params", "body", "shape", "x", "0", "", "a.b", "__class__", "_target_", "training"]
)  # fmt: skip
LEAVES = st.one_of(
    st.sampled_from(
        ["Linear", "Sequential", "ModuleList", "ModuleDict", "Graph", "ReLU", "Conv2d", "LSTM", "Block", "${n}",
         "${n * 2}", "${i}", "${missing}", "${9**9**9}", "${'a' * 10**7}", "y = x", "x", "$${x}"]
    ),
    st.integers(min_value=-3, max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)  # fmt: skip
TREES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=20,
)


@fuzz(250)
@given(model=TREES, vars_=st.dictionaries(st.sampled_from(["n", "i", "w"]), TREES, max_size=3), inp=st.booleans())
def test_spec_trees(model: Any, vars_: dict[str, Any], inp: bool) -> None:
    spec: dict[str, Any] = {"netspec": 1, "vars": vars_, "model": model}
    if inp:
        spec["input"] = {"shape": [4]}
    only_netspec_errors(netspec.read, spec)


@fuzz(120)
@given(
    count=st.integers(min_value=-1, max_value=10**12),
    inner=st.integers(min_value=0, max_value=10**6),
    num_layers=st.integers(min_value=0, max_value=10**9),
)
def test_expansion_counts(count: int, inner: int, num_layers: int) -> None:
    lstm = {"type": "LSTM", "input_size": 4, "hidden_size": 4, "num_layers": num_layers}
    spec = {
        "netspec": 1,
        "model": {
            "type": "Sequential",
            "repeat": count,
            "layer": {"type": "Sequential", "repeat": inner, "layer": lstm},
        },
    }
    only_netspec_errors(netspec.read, spec)


# -- Graph statements ------------------------------------------------------------------------------------

ATOMS = st.sampled_from(
    ["x", "fc", "fc(x)", "pi", "1", "0", "2**22", "9", "1.5", "'a'", "(x, x)", "[x]", "None", "...", "True",
     "x.shape", "x.shape[0]", "arange(4)", "zeros_like(x)", "cat([x, x], dim=-1)", "x.view(-1)", "heads", "seq[0]",
     "lambda: 1", "__import__('os')", "x.__class__", "y"]
)  # fmt: skip
OPS = st.sampled_from([" + ", " - ", " * ", " / ", " // ", " % ", " ** ", " @ ", " < ", " == ", "[", "(", ", "])


@st.composite
def expressions(draw: Any) -> str:
    parts = [draw(ATOMS)]
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        op = draw(OPS)
        parts.append(op + draw(ATOMS) + ("]" if op == "[" else ")" if op == "(" else ""))
    prefix = draw(st.sampled_from(["", "-", "~", "not ", "-" * 40]))
    return prefix + "".join(parts)


@fuzz(250)
@given(expressions(), st.sampled_from(["y = ", "y, z = ", "x = ", "y = y + ", ""]))
def test_graph_statements(expression: str, head: str) -> None:
    spec = {
        "netspec": 1,
        "input": {"shape": [4]},
        "model": {
            "type": "Graph",
            "inputs": ["x"],
            "layers": {"fc": {"type": "Linear", "in_features": 4, "out_features": 4}},
            "forward": [head + expression],
            "outputs": "y",
        },
    }
    only_netspec_errors(netspec.read, spec)


# -- tampered checkpoints ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    spec = {
        "netspec": 1,
        "seed": 0,
        "input": {"shape": [4]},
        "model": {"type": "Sequential", "layers": [{"type": "Linear", "in_features": 4, "out_features": 3}, "ReLU"]},
        "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9},
    }
    path = tmp_path_factory.mktemp("ck") / "ck.pt"
    netspec.save(netspec.build(spec), path)
    return path.read_bytes()


@fuzz(120)
@given(data=st.data())
def test_tampered_checkpoint_bytes(
    checkpoint: bytes, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    raw = bytearray(checkpoint)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        how = data.draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
        at = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        if how == "flip":
            raw[at] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
        elif how == "cut":
            del raw[at:]
        elif how == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        else:
            raw[at : at + 64] = bytes(len(raw[at : at + 64]))
        if not raw:
            raw = bytearray(b"\x80")
    path = tmp_path_factory.mktemp("tampered") / "ck.pt"
    path.write_bytes(bytes(raw))
    only_netspec_errors(netspec.load, path)


PAYLOAD_VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.just(torch.zeros(2)),
    st.just({"weight": torch.zeros(5, 5)}),
)


@fuzz(80)
@given(
    field=st.sampled_from(["format", "format_version", "spec", "model", "tied", "optimizer", "scheduler", "epoch",
                           "extra", "versions", "dtype"]),
    value=PAYLOAD_VALUES,
    spec_key=st.sampled_from(["model", "init", "vars", "optimizer", "extends", "imports", "input"]),
)  # fmt: skip
def test_tampered_checkpoint_fields(
    checkpoint: bytes, tmp_path_factory: pytest.TempPathFactory, field: str, value: Any, spec_key: str
) -> None:
    payload = torch.load(io.BytesIO(checkpoint), weights_only=True)
    payload[field] = value
    if field == "spec" and isinstance(value, dict):
        payload["spec"] = {**torch.load(io.BytesIO(checkpoint), weights_only=True)["spec"], spec_key: value}
    path = tmp_path_factory.mktemp("fields") / "ck.pt"
    torch.save(payload, path)
    only_netspec_errors(netspec.load, path)


def test_zip_members_are_bounded_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\x80" + b"\0" * (32 * 1024 * 1024))
    err = only_netspec_errors(netspec.load, path)
    assert isinstance(err, netspec.CheckpointError) and "would inflate" in str(err)


def test_printable_alphabet_is_covered() -> None:
    # The token lists above include a control character, a line separator and a lone surrogate escape.
    assert any(c in string.printable for c in YAML_TOKENS[0])
    assert "\x1b" in YAML_TOKENS and "\u2028" in YAML_TOKENS and '"\\ud800"' in JSON_TOKENS
