"""YAML out: spec data -> the YAML text netspec writes (``Spec.to_yaml``, ``netspec show``).

In: plain spec data (or one scalar). Out: YAML that netspec's own YAML 1.2 reader reads back as
the same data — block style at the top, flow style for leaf mappings and lists, keys in order,
and every string quoted that the reader would otherwise take for something else (``"1e-3"``,
``"yes"`` stays plain since YAML 1.2 reads it as a string). No torch here.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import SpecError
from .scalars import parse_scalar


class _Dumper(yaml.SafeDumper):
    """Quotes every string netspec's YAML 1.2 reader would read as something else (``"1e-3"``)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    try:
        plain_is_str = isinstance(parse_scalar(value), str) and value.strip() == value and value != ""
    except SpecError:
        plain_is_str = False
    style = None if plain_is_str else '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    """Lists of long strings (Graph ``forward`` statements) in block style, one per line; short leaf lists in flow."""
    long_text = any(isinstance(v, str) and len(v) > 24 for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=False if long_text else None)


_Dumper.add_representer(list, _represent_list)


def dump_yaml(data: Any) -> str:
    """Block style at the top, flow style for leaf mappings/lists (``{type: ReLU}``), keys in order."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None, allow_unicode=True, width=100)


def scalar_yaml(value: Any) -> str:
    """One scalar (or a flow list/mapping of scalars) as it appears after ``key: `` in ``dump_yaml``'s output."""
    text = yaml.dump(value, Dumper=_Dumper, default_flow_style=True, allow_unicode=True, width=10**9)
    return text.removesuffix("\n").removesuffix("\n...").strip()


__all__ = ["dump_yaml", "scalar_yaml"]
