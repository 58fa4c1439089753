"""The JSON Schema admits a ``${...}`` reference wherever netspec does.

Two checks: (1) a spec using every section, with each of its values (and each mapping or list of a
substituted section) in turn replaced by a reference to a var holding it — whatever netspec reads,
the schema accepts; the places users write references (``optimizer.lr``, ``groups[].lr_mult``,
``clip_grad.max_norm``, ``scheduler.warmup.steps``, layer and block arguments, init arguments,
distributed fields…) must be read by netspec too. (2) A walk of the schema itself: every value
position that takes a number or a bool also takes a reference, so a new field cannot regress.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from conftest import SPEC_FILES

import netspec
from netspec.frontend.source import load_file
from netspec.frontend.substitute import VAR_SECTIONS
from netspec.schema import schema_text

Path_ = tuple[str | int, ...]

RICH: dict[str, Any] = {
    "netspec": 1,
    "name": "rich",
    "seed": 3,
    "vars": {"unused": 0},
    "input": {"shape": [3, 8, 8], "dtype": "float32"},
    "blocks": {
        "Unit": {
            "params": {"c": {"type": "int", "default": 4}, "act": {"type": "bool", "default": True}},
            "body": {
                "type": "Sequential",
                "layers": [
                    {"type": "Conv2d", "out_channels": "${c}", "kernel_size": [3, 3], "padding": 1, "bias": False},
                    {"type": "BatchNorm2d", "momentum": 0.1},
                    {"type": "ReLU", "if": "${act}"},
                ],
            },
        }
    },
    "model": {
        "type": "Sequential",
        "layers": [
            {"type": "Unit", "c": 4, "act": True},
            {"repeat": 2, "layer": {"type": "Unit", "c": 4}},
            {
                "type": "Graph",
                "inputs": ["x"],
                "parameters": {"scale": {"shape": [1], "init": "ones", "requires_grad": True}},
                "buffers": {"off": {"shape": [1], "persistent": True}},
                "forward": ["y = x * scale + off"],
                "outputs": "y",
            },
            {"type": "AdaptiveAvgPool2d", "output_size": 1},
            "Flatten",
            {"type": "Dropout", "p": 0.1},
            {"type": "Linear", "out_features": 10, "bias": True},
        ],
    },
    "init": [
        {"type": "Linear", "weight": {"fn": "normal", "mean": 0.0, "std": 0.02}, "bias": "zeros"},
        {"type": "Conv2d", "fn": "kaiming_uniform", "a": 0.5},
    ],
    "freeze": [{"type": "BatchNorm2d", "eval": False}],
    "eval": [{"type": "BatchNorm2d"}],
    "optimizer": {
        "type": "SGD",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 0.0001,
        "nesterov": True,
        "no_decay": ["bias"],
        "groups": [{"params": "0.*", "lr_mult": 0.5, "decay_mult": 1.0}],
        "clip_grad": {"max_norm": 1.0, "norm_type": 2.0},
    },
    "scheduler": {
        "type": "StepLR",
        "step_size": 10,
        "gamma": 0.5,
        "interval": "epoch",
        "warmup": {"steps": 5, "start_factor": 0.1},
    },
    "average": {"type": "ema", "decay": 0.99},
    "distributed": {
        "strategy": "fsdp",
        "shard": ["0"],
        "reshard_after_forward": True,
        "mixed_precision": {"param_dtype": "bfloat16", "reduce_dtype": "float32"},
    },
}

# Where users write references; netspec must read each of these (and the schema accept it).
MUST_READ: list[Path_] = [
    ("optimizer", "lr"),
    ("optimizer", "weight_decay"),
    ("optimizer", "momentum"),
    ("optimizer", "groups", 0, "lr_mult"),
    ("optimizer", "groups", 0, "decay_mult"),
    ("optimizer", "clip_grad", "max_norm"),
    ("optimizer", "clip_grad", "norm_type"),
    ("optimizer", "clip_grad"),
    ("optimizer", "groups"),
    ("optimizer",),
    ("scheduler", "warmup", "steps"),
    ("scheduler", "warmup", "start_factor"),
    ("scheduler", "gamma"),
    ("scheduler", "interval"),
    ("init", 0, "weight", "std"),
    ("init", 1, "a"),
    ("freeze", 0, "eval"),
    ("average", "decay"),
    ("distributed", "reshard_after_forward"),
    ("distributed", "mixed_precision", "param_dtype"),
    ("distributed", "strategy"),
    ("distributed", "shard"),
    ("seed",),
    ("input", "shape", 0),
    ("input", "shape"),
    ("input", "dtype"),
    ("model", "layers", 0, "c"),  # a block parameter
    ("model", "type"),  # a container named by a reference
    ("model", "layers", 2, "type"),
    ("blocks", "Unit", "params", "c", "default"),  # block parameter defaults are substituted too
    ("blocks", "Unit", "params", "act", "default"),
    ("model", "layers", 0, "act"),
    ("model", "layers", 1, "repeat"),
    ("model", "layers", 2, "parameters", "scale", "shape", 0),
    ("model", "layers", 2, "parameters", "scale", "requires_grad"),
    ("model", "layers", 3, "output_size"),  # layer arguments
    ("model", "layers", 5, "p"),
    ("model", "layers", 6, "out_features"),
    ("model", "layers", 6, "bias"),
    ("blocks", "Unit", "body", "layers", 0, "kernel_size", 0),  # inside a layer argument
    ("blocks", "Unit", "body", "layers", 0, "kernel_size"),
    ("blocks", "Unit", "body", "layers", 1, "momentum"),
]


def places(value: Any, path: Path_ = ()) -> Iterator[Path_]:
    """Every value's path in ``value``, mappings and lists included (not the version, not the vars)."""
    if path and path[0] in ("netspec", "vars"):
        return
    if isinstance(value, dict | list):
        if path:
            yield path
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            yield from places(item, (*path, key))
    elif path:
        yield path


def with_reference(spec: dict[str, Any], path: Path_) -> dict[str, Any]:
    """``spec`` with the value at ``path`` moved into the var ``v`` and replaced by ``${v}``."""
    out = copy.deepcopy(spec)
    holder: Any = out
    for key in path[:-1]:
        holder = holder[key]
    out["vars"] = {**out["vars"], "v": holder[path[-1]]}
    holder[path[-1]] = "${v}"
    return out


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(schema_text())


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(schema)


def schema_errors(validator: jsonschema.protocols.Validator, data: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message[:160]}" for e in validator.iter_errors(data)]


def test_the_rich_spec_is_read_and_accepted_as_written(validator: jsonschema.protocols.Validator) -> None:
    spec = netspec.read(RICH)
    assert spec.name == "rich"
    assert schema_errors(validator, RICH) == []


def test_a_reference_anywhere_netspec_reads_one_is_accepted_by_the_schema(
    validator: jsonschema.protocols.Validator,
) -> None:
    every = list(places(RICH))
    assert set(MUST_READ) <= set(every)
    read, refused = [], []
    for path in every:
        data = with_reference(RICH, path)
        try:
            netspec.read(data)
        except netspec.SpecError:
            refused.append(path)
            continue
        read.append(path)
        assert schema_errors(validator, data) == [], f"netspec reads ${{v}} at {path}; the schema refuses it"
    assert [p for p in MUST_READ if p in refused] == []
    assert len(read) > 60  # the walk covered the spec, not a corner of it


def test_a_reference_with_the_wrong_value_is_refused_by_netspec_at_its_path() -> None:
    data = with_reference(RICH, ("optimizer", "clip_grad", "max_norm"))
    data["vars"]["v"] = "big"
    with pytest.raises(netspec.SpecError) as err:
        netspec.read(data)
    assert err.value.problems[0].path[:3] == ("optimizer", "clip_grad", "max_norm")


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.name for p in SPEC_FILES])
def test_every_shipped_spec_is_read_by_netspec_and_accepted_by_the_schema(
    validator: jsonschema.protocols.Validator, path: Any
) -> None:
    netspec.read(path)
    assert schema_errors(validator, load_file(path).data) == []


# -- the schema walked ---------------------------------------------------------------------


def positions(schema: dict[str, Any], defs: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every value position reachable from ``schema`` (object properties, additional properties, array
    items), with a readable path; each ``$defs`` entry is entered once (``Node`` is recursive)."""
    seen: set[str] = set()
    todo: list[tuple[str, Any]] = [("", schema)]
    while todo:
        where, item = todo.pop()
        if not isinstance(item, dict):
            continue
        ref = item.get("$ref")
        if isinstance(ref, str):
            name = ref.removeprefix("#/$defs/")
            if name not in seen:
                seen.add(name)
                todo.append((f"{where}<{name}>", defs[name]))
        for key, child in item.get("properties", {}).items():
            yield f"{where}.{key}", child
            todo.append((f"{where}.{key}", child))
        for key in ("additionalProperties", "items"):
            if isinstance(item.get(key), dict):
                yield f"{where}.{key}", item[key]
                todo.append((f"{where}.{key}", item[key]))
        for i, child in enumerate(item.get("prefixItems", [])):
            yield f"{where}[{i}]", child
            todo.append((f"{where}[{i}]", child))
        for key in ("anyOf", "oneOf", "allOf"):
            todo.extend((where, member) for member in item.get(key, []))


def direct_kinds(schema: Any, defs: dict[str, Any], depth: int = 0) -> set[str]:
    """The JSON types a value at this position may have, looking through unions and ``$ref`` only."""
    if not isinstance(schema, dict) or depth > 20:
        return set()
    kinds: set[str] = set()
    kind = schema.get("type")
    kinds.update(kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else [])
    for value in [*schema.get("enum", []), *([schema["const"]] if "const" in schema else [])]:
        kinds.add("boolean" if isinstance(value, bool) else "number" if isinstance(value, int | float) else "other")
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.removeprefix("#/$defs/") in defs:
        kinds |= direct_kinds(defs[ref.removeprefix("#/$defs/")], defs, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        for member in schema.get(key, []):
            kinds |= direct_kinds(member, defs, depth + 1)
    return kinds


def admits_reference(schema: Any, defs: dict[str, Any]) -> bool:
    position = {"$defs": defs, **schema} if isinstance(schema, dict) else schema
    return jsonschema.Draft202012Validator(position).is_valid("${width * 2}")


def test_every_number_or_bool_in_the_schema_also_admits_a_reference(schema: dict[str, Any]) -> None:
    defs = schema["$defs"]
    numeric = [
        (where, sub)
        for where, sub in positions(schema, defs)
        if where != ".netspec" and direct_kinds(sub, defs) & {"integer", "number", "boolean"}
    ]
    assert len(numeric) > 500  # every layer's numeric arguments, the training sections, the node models
    refused = [where for where, sub in numeric if not admits_reference(sub, defs)]
    assert refused == []
    assert not admits_reference(schema["properties"]["netspec"], defs)  # the version is never substituted


def test_every_value_of_a_substituted_section_admits_a_reference(schema: dict[str, Any]) -> None:
    defs = schema["$defs"]
    found = 0
    for section in VAR_SECTIONS:
        top = schema["properties"][section]
        assert admits_reference(top, defs), section
        for where, sub in positions(top, defs):
            found += 1
            assert admits_reference(sub, defs), f"{section}{where}"
    assert found > 50


def test_a_reference_does_not_make_a_wrong_value_right(validator: jsonschema.protocols.Validator) -> None:
    bad = copy.deepcopy(RICH)
    bad["optimizer"]["lr"] = "fast"  # a string that is not a reference
    bad["model"]["layers"][6]["out_features"] = "ten"
    bad["scheduler"]["warmup"]["steps"] = [5]
    assert len(schema_errors(validator, bad)) == 3
    with pytest.raises(netspec.SpecError):
        netspec.read(bad)
