"""The JSON Schema of the spec language, generated from the spec models and the layer catalogue.

In: the pydantic models of ``spec`` and every ``LayerType`` in the catalogue. Out: one JSON
Schema (draft 2020-12) in which ``Node`` lists the container kinds and one entry per layer
type with its arguments, so an editor with the YAML language server completes layer types
and their keyword arguments. ``schemas/netspec.schema.json`` is this output, checked in.

A ``${...}`` reference is accepted wherever netspec accepts one: at every value of the sections
substituted before they are checked (``optimizer``, ``scheduler``, ``init``, ``distributed``, …:
a reference there may stand for any value, a whole mapping included), at every layer argument
and inside it (``kernel_size: [3, ${k}]``), and where the node models take one (``repeat``,
``if``, tensor shapes).
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from .catalog.registry import CONTAINER_TYPES, LAYERS, LayerType
from .frontend.models import NODE_KINDS, NODE_PLACEHOLDER, PARAM_TYPES, REF_SCHEMA, RepeatItem, SpecModel
from .frontend.substitute import VAR_SECTIONS

SCHEMA_ID = "https://netspec.dev/schemas/netspec.schema.json"


def _default(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, tuple):
        return list(value)
    return None


_ANNOTATIONS = ("title", "description", "default")
_NODE_REF = "#/$defs/Node"  # a node admits any string already (the shorthand for {type: <name>})


def _admits_any_string(schema: Any) -> bool:
    """Whether every string (so every ``${...}``) is valid against ``schema``, judged from its form."""
    if schema is True or schema == {} or schema == REF_SCHEMA:
        return True
    if not isinstance(schema, dict):
        return False
    if schema.get("$ref") == _NODE_REF or set(NODE_PLACEHOLDER) <= set(schema):
        return True
    if schema.get("type") == "string" and not {"enum", "const", "pattern", "maxLength", "minLength"} & set(schema):
        return True
    return any(_admits_any_string(option) for option in schema.get("anyOf", ()))


def admit_refs(schema: Any, defs: dict[str, Any], done: set[str]) -> Any:
    """``schema`` with a ``${...}`` string admitted at it and at every value inside it (object
    properties, array items, union members' insides), following ``$ref``s into ``defs`` (each
    definition rewritten once, in place; ``done`` names those already rewritten)."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/") and ref != _NODE_REF:
        name = ref.removeprefix("#/$defs/")
        if name not in done:
            done.add(name)
            defs[name] = admit_refs(defs[name], defs, done)
        return out  # the definition itself now admits a reference
    for key in ("properties", "patternProperties"):
        if isinstance(out.get(key), dict):
            out[key] = {k: admit_refs(v, defs, done) for k, v in out[key].items()}
    for key in ("additionalProperties", "items"):
        if isinstance(out.get(key), dict):
            out[key] = admit_refs(out[key], defs, done)
    if isinstance(out.get("prefixItems"), list):
        out["prefixItems"] = [admit_refs(v, defs, done) for v in out["prefixItems"]]
    if isinstance(out.get("oneOf"), list):  # a reference may match several members now: anyOf, not oneOf
        out["anyOf"] = [*out.get("anyOf", []), *out.pop("oneOf")]
    if isinstance(out.get("anyOf"), list):  # the members' insides; the reference is added once, below
        out["anyOf"] = [_unwrapped(admit_refs(v, defs, done)) for v in out["anyOf"]]
    if _admits_any_string(out):
        return out
    if isinstance(out.get("anyOf"), list) and not {"type", "$ref"} & set(out):
        return {**out, "anyOf": [*out["anyOf"], REF_SCHEMA]}
    notes = {k: out.pop(k) for k in _ANNOTATIONS if k in out}
    return {"anyOf": [out, REF_SCHEMA], **notes}


def _defs_reached(schemas: list[Any], defs: dict[str, Any]) -> set[str]:
    """The names of the definitions ``schemas`` refer to, directly or through other definitions."""
    seen: set[str] = set()
    todo = list(schemas)
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/") and ref.removeprefix("#/$defs/") not in seen:
                seen.add(ref.removeprefix("#/$defs/"))
                todo.append(defs.get(ref.removeprefix("#/$defs/")))
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return seen


def _unwrapped(schema: Any) -> Any:
    """A union member that ``admit_refs`` wrapped: its core (the union admits the reference once)."""
    if isinstance(schema, dict) and set(schema) == {"anyOf"} and schema["anyOf"][-1:] == [REF_SCHEMA]:
        rest = schema["anyOf"][:-1]
        return rest[0] if len(rest) == 1 else {"anyOf": rest}
    return schema


def layer_schema(layer: LayerType) -> dict[str, Any]:
    properties: dict[str, Any] = {"type": {"const": layer.name}}
    for param in layer.params.values():
        entry: dict[str, Any] = dict(admit_refs(param.type.json_schema(), {}, set()))  # resolve substitutes inside
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
    schema = _link_nodes(schema)
    _admit_refs_in_substituted_sections(schema["properties"], schema["$defs"])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "netspec spec, version 1",
        **schema,
    }


def _admit_refs_in_substituted_sections(top: dict[str, Any], defs: dict[str, Any]) -> None:
    """Sections substituted before they are checked: a reference may stand for any value in them."""
    substituted: set[str] = set()
    for key in VAR_SECTIONS:
        top[key] = admit_refs(top[key], defs, substituted)
    as_written = _defs_reached([top[k] for k in top if k not in VAR_SECTIONS], defs)
    if substituted & as_written:  # one definition cannot both admit and refuse a reference
        raise RuntimeError(f"definitions in substituted and unsubstituted sections: {sorted(substituted & as_written)}")


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"
