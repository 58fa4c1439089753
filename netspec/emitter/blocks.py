"""Repeated custom submodules -> ``blocks:`` entries used several times.

In: every emitted instance of a custom module (or netspec block) — its class name, its body node
and the ``{type: ...}`` dict that stands for it in the tree. Out: the ``blocks:`` mapping, with
each use dict filled in. Instances of one class whose bodies are identical become one block
named after the class; bodies that differ only in layer arguments (a ResNet ``Bottleneck`` with
other widths or strides, or a ``C3`` whose run of identical children is 1, 2 or 3 long) become one
*parameterised* block whose varying arguments are
``${params}`` without defaults (every use passes its values, so a use that leaves one out is an
error, never another instance's value); anything else gets its own block
(``Bottleneck_2``). Block names never shadow a catalogue layer or a netspec node kind.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from ..catalog.registry import CONTAINER_TYPES, LAYERS, REQUIRED

_NODE_KEYS = frozenset({"layers", "layer"})  # where child nodes live in container / Graph nodes
Position = tuple[Any, ...]  # a path into a body down to one layer argument
COUNT = "#count"  # the position of a run's length (no layer argument has this name)


@dataclass
class _Instance:
    cls_name: str
    body: Any
    use: dict[str, Any]


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


class BlockTable:
    """Collects block instances during the walk; ``finish`` names them and returns ``blocks:``."""

    def __init__(self) -> None:
        self.instances: list[_Instance] = []
        self.blocks: dict[str, dict[str, Any]] = {}
        self._taken: set[str] = set()

    def add(self, cls_name: str, body: Any) -> dict[str, Any]:
        use: dict[str, Any] = {"type": None}
        self.instances.append(_Instance(cls_name, body, use))
        return use

    def finish(self) -> dict[str, dict[str, Any]]:
        todo = list(self.instances)
        while todo:
            # Resolve innermost blocks first: an outer body is only comparable once its uses are named.
            ready = [i for i in todo if not _has_open_use(i.body)]
            if not ready:  # unreachable: a body cannot contain itself
                raise RuntimeError("block instances refer to each other")
            groups: dict[tuple[str, str], list[_Instance]] = {}
            for inst in ready:
                groups.setdefault((inst.cls_name, _dump(_skeleton(inst.body, self.blocks))), []).append(inst)
            for (cls_name, _), members in groups.items():
                self._name_group(cls_name, members)
            todo = [i for i in todo if i.use["type"] is None]
        return self.blocks

    def _new_name(self, cls_name: str) -> str:
        base = cls_name if cls_name.isidentifier() else "Block"
        if base in LAYERS or base in CONTAINER_TYPES:
            base = f"{base}Block"
        name, k = base, 2
        while name in self._taken or name in LAYERS or name in CONTAINER_TYPES:
            name = f"{base}_{k}"
            k += 1
        self._taken.add(name)
        return name

    def _name_group(self, cls_name: str, members: list[_Instance]) -> None:
        param = _parameterise([m.body for m in members], self.blocks)
        if param is None:
            exact: dict[str, list[_Instance]] = {}
            for m in members:
                exact.setdefault(_dump(m.body), []).append(m)
            for same in exact.values():
                name = self._new_name(cls_name)
                self.blocks[name] = {"body": same[0].body}
                for m in same:
                    m.use["type"] = name
            return
        body, params, values = param
        name = self._new_name(cls_name)
        block: dict[str, Any] = {}
        if params:
            block["params"] = params
        block["body"] = body
        self.blocks[name] = block
        for m, given in zip(members, values, strict=True):
            m.use["type"] = name
            m.use.update(given)


def _has_open_use(value: Any) -> bool:
    if isinstance(value, dict):
        if "type" in value and value["type"] is None:
            return True
        return any(_has_open_use(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_open_use(v) for v in value)
    return False


def _is_layer(node: Any, blocks: dict[str, Any]) -> bool:
    return (
        isinstance(node, dict)
        and isinstance(node.get("type"), str)
        and ((node["type"] in LAYERS and node["type"] not in CONTAINER_TYPES) or node["type"] in blocks)
    )


def _is_scalar(value: Any) -> bool:
    if isinstance(value, list):
        return all(_is_scalar(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _uniform(node: Any) -> bool:
    """A Sequential/ModuleList of identical children: its length is a repeat count a block may vary."""
    if not (isinstance(node, dict) and node.get("type") in ("Sequential", "ModuleList")):
        return False
    layers = node.get("layers")
    return isinstance(layers, list) and bool(layers) and len({_dump(v) for v in layers}) == 1


def _skeleton(node: Any, blocks: dict[str, Any]) -> Any:
    """The body with every layer argument value (and which optional ones are given) and the length of each
    run of identical children left out (so depth variants of one class, C3 with n = 1, 2, 3, group)."""
    if _uniform(node):
        rest = {k: _skeleton(v, blocks) for k, v in node.items() if k != "layers"}
        return {**rest, "repeat": COUNT, "layer": _skeleton(node["layers"][0], blocks)}
    if _is_layer(node, blocks):
        return {"type": node["type"], **{k: _skeleton(v, blocks) for k, v in node.items() if isinstance(v, dict)}}
    if isinstance(node, dict):
        return {k: _skeleton(v, blocks) for k, v in node.items()}
    if isinstance(node, list):
        return [_skeleton(v, blocks) for v in node]
    return node


def _positions(node: Any, blocks: dict[str, Any], at: Position, out: dict[Position, tuple[str, Any]]) -> None:
    """Every layer argument position in ``node``: position -> (layer type, value); a run of identical
    children gives its count (at ``(..., COUNT)``) and the first child's positions."""
    if _uniform(node):
        out[(*at, COUNT)] = (COUNT, len(node["layers"]))
        for k, v in node.items():
            if k != "layers":
                _positions(v, blocks, (*at, k), out)
        _positions(node["layers"][0], blocks, (*at, "layers", 0), out)
        return
    if _is_layer(node, blocks):
        for k, v in node.items():
            if k == "type":
                continue
            if isinstance(v, dict):
                _positions(v, blocks, (*at, k), out)
            else:
                out[(*at, k)] = (node["type"], v)
        return
    if isinstance(node, dict):
        for k, v in node.items():
            _positions(v, blocks, (*at, k), out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _positions(v, blocks, (*at, i), out)


def _default_of(type_name: str, arg: str, blocks: dict[str, Any]) -> Any:
    """The value an omitted argument takes, or REQUIRED when it cannot be written out."""
    if type_name in blocks:
        decl = blocks[type_name].get("params", {}).get(arg)
        return decl["default"] if isinstance(decl, dict) and "default" in decl else REQUIRED
    param = LAYERS.get(type_name).params.get(arg)
    if param is None or param.required or not _is_scalar(param.default):
        return REQUIRED
    return list(param.default) if isinstance(param.default, tuple) else param.default


def _param_type(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "float"
    if all(isinstance(v, str) for v in values):
        return "str"
    if all(isinstance(v, list) for v in values):
        return "list"
    return "any"


def _set(node: Any, at: Position, value: Any) -> None:
    for key in at[:-1]:
        node = node[key]
    node[at[-1]] = value


def _parameterise(bodies: list[Any], blocks: dict[str, Any]) -> tuple[Any, dict[str, Any], list[dict[str, Any]]] | None:
    """One body with ``${param}`` where the bodies' layer arguments differ, or None when that is impossible."""
    found = []
    for body in bodies:
        table: dict[Position, tuple[str, Any]] = {}
        _positions(body, blocks, (), table)
        found.append(table)
    every = list(dict.fromkeys(pos for table in found for pos in table))
    columns: dict[Position, list[Any]] = {}
    for pos in every:
        type_name = next(table[pos][0] for table in found if pos in table)
        column = []
        for table in found:
            if pos in table:
                value = table[pos][1]
            else:
                value = _default_of(type_name, pos[-1], blocks)
                if value is REQUIRED:
                    return None
            if not _is_scalar(value) or (isinstance(value, str) and "${" in value):
                return None
            column.append(value)
        columns[pos] = column
    body = copy.deepcopy(bodies[0])
    params: dict[str, Any] = {}
    by_column: dict[str, str] = {}
    values: list[dict[str, Any]] = [{} for _ in bodies]
    counts: list[tuple[Position, str]] = []
    for pos, column in columns.items():
        dumped = [_dump(v) for v in column]
        if len(set(dumped)) == 1:
            if pos in found[0] or pos[-1] == COUNT:
                continue  # identical everywhere: stays as written
            _set(body, pos, column[0])
            continue
        key = _dump(dumped)
        if key not in by_column:
            # no default: each use says its value, so a use that leaves one out is an error rather than
            # silently getting another instance's value
            name = _param_name((*pos[:-1], "depth") if pos[-1] == COUNT else pos, params)
            by_column[key] = name
            params[name] = {"type": _param_type(column)}
            for i, value in enumerate(column):
                values[i][name] = value
        if pos[-1] == COUNT:
            counts.append((pos[:-1], by_column[key]))
        else:
            _set(body, pos, "${" + by_column[key] + "}")
    # a varying run length: {type: Sequential, repeat: ${repeat}, layer: <the child>}, deepest runs first
    for at, name in sorted(counts, key=lambda c: -len(c[0])):
        node = body
        for key in at:
            node = node[key]
        layers = node.pop("layers")
        node["repeat"] = "${" + name + "}"
        node["layer"] = layers[0]
    return body, params, values


def _param_name(pos: Position, taken: dict[str, Any]) -> str:
    arg = str(pos[-1])
    owner = next((str(p) for p in reversed(pos[:-1]) if isinstance(p, str) and p not in _NODE_KEYS), "")
    for candidate in (arg, f"{owner}_{arg}" if owner else arg):
        if candidate.isidentifier() and candidate not in taken:
            return candidate
    k = 2
    while f"{arg}_{k}" in taken:
        k += 1
    return f"{arg}_{k}"


__all__ = ["BlockTable"]
