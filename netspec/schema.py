"""The JSON Schema of the spec language, generated from the spec models and the layer catalogue.

In: the pydantic models of ``spec`` and every ``LayerType`` in the catalogue. Out: one JSON
Schema (draft 2020-12) in which ``Node`` lists the container kinds and one entry per layer
type with its arguments, so an editor with the YAML language server completes layer types
and their keyword arguments. ``schemas/netspec.schema.json`` is this output, checked in.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from .catalog.registry import CONTAINER_TYPES, LAYERS, LayerType
from .frontend.models import NODE_KINDS, NODE_PLACEHOLDER, PARAM_TYPES, REF_SCHEMA, RepeatItem, SpecModel

SCHEMA_ID = "https://netspec.dev/schemas/netspec.schema.json"


def _default(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, tuple):
        return list(value)
    return None


def layer_schema(layer: LayerType) -> dict[str, Any]:
    properties: dict[str, Any] = {"type": {"const": layer.name}}
    for param in layer.params.values():
        entry: dict[str, Any] = {"anyOf": [param.type.json_schema(), REF_SCHEMA]}
        if not param.required:
            default = _default(param.default)
            if default is not None or param.default is None:
                entry["default"] = default
        entry["description"] = param.type.describe() + (" (required)" if param.required else "")
        properties[param.name] = entry
    properties["if"] = {"anyOf": [{"type": "boolean"}, REF_SCHEMA], "description": "false leaves this layer out"}
    doc = inspect.getdoc(layer.cls) or ""
    return {
        "type": "object",
        "title": layer.name,
        "description": doc.split("\n\n")[0][:300],
        "properties": properties,
        "required": ["type"],
        "additionalProperties": False,
    }


def _link_nodes(value: Any) -> Any:
    if isinstance(value, dict) and set(NODE_PLACEHOLDER) <= set(value):
        return {**{k: v for k, v in value.items() if k not in NODE_PLACEHOLDER}, "$ref": "#/$defs/Node"}
    if isinstance(value, dict):
        return {k: _link_nodes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_link_nodes(v) for v in value]
    return value


def json_schema() -> dict[str, Any]:
    """The whole schema as a dict (deterministic: same torch, same output)."""
    schema = SpecModel.model_json_schema(ref_template="#/$defs/{model}")
    defs = schema.setdefault("$defs", {})
    node_kinds = [*NODE_KINDS.values(), RepeatItem]  # RepeatItem: {repeat: N, layer: ...} in a list of layers
    for cls in node_kinds:
        sub = cls.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(sub.pop("$defs", {}))
        defs[cls.__name__] = sub
    # Block parameters may be written as a bare type name ({cin: int}), the shorthand for {type: int}.
    params = defs["BlockSpec"]["properties"]["params"]
    params["additionalProperties"] = {"anyOf": [{"enum": list(PARAM_TYPES)}, params["additionalProperties"]]}
    names = [n for n in LAYERS.names() if LAYERS.get(n).origin in ("torch.nn", "netspec")]
    layer_refs = []
    for name in names:
        defs[f"layer_{name}"] = layer_schema(LAYERS.get(name))
        layer_refs.append({"$ref": f"#/$defs/layer_{name}"})
    other = {
        "type": "object",
        "title": "block or registered layer",
        "properties": {"type": {"type": "string", "not": {"enum": sorted([*names, *CONTAINER_TYPES])}}},
        "required": ["type"],
    }
    defs["Node"] = {
        "anyOf": [
            {"anyOf": [{"enum": names}, {"type": "string"}], "description": "shorthand for {type: <name>}"},
            *({"$ref": f"#/$defs/{cls.__name__}"} for cls in node_kinds),
            *layer_refs,
            other,
        ]
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "netspec spec, version 1",
        **_link_nodes(schema),
    }


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"
