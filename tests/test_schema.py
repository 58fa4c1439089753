"""The JSON Schema: checked in, identical to what the code generates, valid, and agreeing with the specs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch.nn as nn
from conftest import SCHEMA_FILE, SPEC_FILES

import netspec
from netspec.frontend.source import load_file
from netspec.schema import json_schema, schema_text

REGENERATE = "python -m netspec.cli schema -o schemas/netspec.schema.json"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(schema_text())


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(schema)


def errors(validator: jsonschema.protocols.Validator, data: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(data)]


def test_checked_in_schema_is_up_to_date() -> None:
    assert SCHEMA_FILE.exists(), f"schemas/netspec.schema.json is missing; generate it with: {REGENERATE}"
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        f"schemas/netspec.schema.json is out of date; regenerate it with: {REGENERATE}"
    )


def test_schema_is_deterministic_and_ignores_registered_classes(clean_registry: None) -> None:
    first = schema_text()

    class Custom(nn.Module):
        def __init__(self, width: int = 2) -> None:
            super().__init__()

    netspec.register(Custom)
    assert schema_text() == first
    assert json.loads(first) == json_schema()


def test_schema_is_valid_draft_2020_12(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_torch_layer_has_a_definition_with_its_arguments(schema: dict[str, Any]) -> None:
    defs = schema["$defs"]
    for name in netspec.LAYERS.names():
        layer = netspec.LAYERS.get(name)
        if layer.origin != "torch.nn":
            continue
        entry = defs[f"layer_{name}"]
        assert entry["properties"]["type"] == {"const": name}
        assert set(entry["properties"]) == {"type", "if", *layer.params}  # `if:` is allowed on every node
        assert entry["additionalProperties"] is False


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.name for p in SPEC_FILES])
def test_every_example_spec_validates(validator: jsonschema.protocols.Validator, path: Path) -> None:
    assert errors(validator, load_file(path).data) == []


def spec(model: Any, **top: Any) -> dict[str, Any]:
    return {"netspec": 1, **top, "model": model}


CONV = {"type": "Conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3}


@pytest.mark.parametrize(
    "data",
    [
        spec({**CONV, "kernel_sise": 3}),  # misspelled argument
        spec({**CONV, "kernel_size": [3, 3, 3]}),  # wrong length
        spec({**CONV, "bias": "yes"}),  # wrong type
        spec({**CONV, "padding_mode": "zerosx"}),  # not one of the literals
        spec("ReLU", modle="x"),  # unknown top-level key
        spec("ReLU") | {"netspec": 2},
        {"model": "ReLU"},  # no netspec
        spec({"type": "Sequential", "layers": [CONV], "layerz": 1}),
        spec({"type": "ModuleList", "repeat": "three", "layer": CONV}),
    ],
    ids=[
        "misspelled-arg",
        "tuple-length",
        "bool-type",
        "literal",
        "top-key",
        "version",
        "no-netspec",
        "node-key",
        "repeat",
    ],
)
def test_invalid_specs_fail_schema_validation(validator: jsonschema.protocols.Validator, data: Any) -> None:
    assert not validator.is_valid(data)
    with pytest.raises(netspec.SpecError):  # the schema and netspec agree
        netspec.read(data)


@pytest.mark.parametrize(
    "data",
    [
        spec(CONV),
        spec({**CONV, "out_channels": "${width * 2}"}, vars={"width": 4}),  # references stand for any value
        spec({"type": "Sequential", "layers": {"c": CONV, "act": "ReLU"}}),
        spec({"type": "Sequential", "layers": [CONV, {"repeat": 2, "layer": "ReLU"}]}),  # splice item
        spec({"type": "ModuleList", "repeat": 3, "layer": CONV}),
        spec({"type": "ModuleDict", "layers": {"a": CONV}}),
        spec({"type": "MyBlock", "width": 3}, blocks={"MyBlock": {"params": {"width": "int"}, "body": "ReLU"}}),
        spec({"type": "CustomRegistered", "anything": [1, 2]}),
    ],
    ids=["layer", "reference", "mapping", "splice", "repeat", "dict", "block-shorthand", "registered"],
)
def test_valid_specs_pass_schema_validation(validator: jsonschema.protocols.Validator, data: Any) -> None:
    assert errors(validator, data) == []
