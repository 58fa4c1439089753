"""Names a spec gives to children and to a Graph's inputs, checked before anything is built.

In: a name and where it was written (or a Graph node's ``inputs``), the ``Source`` and a problem
list. Out: problems for names that would break ``state_dict`` keys, clash with ``nn.Module``'s own
attributes or the generated forward's reserved names, or repeat; ``check_child_name`` also says
whether the name can be used.
"""

from __future__ import annotations

import keyword

import torch.nn as nn

from ..errors import ProblemList, SpecPath, printable
from ..frontend.models import GraphNode
from ..frontend.source import Source
from .allowlists import RESERVED_NAMES

# Attributes every nn.Module instance sets in __init__ (_modules, _parameters, training, ...).
_MODULE_INSTANCE_ATTRIBUTES = frozenset(vars(nn.Module()))


def check_child_name(name: str, path: SpecPath, source: Source, problems: ProblemList) -> bool:
    if not isinstance(name, str) or name == "":
        problems.add(source.problem(path, "child names must be non-empty strings"))
        return False
    if printable(name, keep_newlines=False) != name:
        problems.add(source.problem(path, f"child name {name!r} holds control or unpaired surrogate characters"))
        return False
    if "." in name:
        problems.add(
            source.problem(
                path,
                f"child name {name!r} contains '.', which breaks state_dict keys",
                hint=f"use {name.replace('.', '_')!r}",
            )
        )
        return False
    if hasattr(nn.Module, name) or name in _MODULE_INSTANCE_ATTRIBUTES:
        problems.add(source.problem(path, f"child name {name!r} clashes with the nn.Module attribute of that name"))
        return False
    return True


def check_graph_inputs(node: GraphNode, path: SpecPath, source: Source, problems: ProblemList) -> None:
    """Inputs become forward's parameter names: identifiers, distinct, not a layer's or tensor's name."""
    seen: set[str] = set()
    owned = {*node.layers, *node.parameters, *node.buffers}
    for k, input_name in enumerate(node.inputs):
        if not input_name.isidentifier() or keyword.iskeyword(input_name) or input_name.startswith("_"):
            message = f"input name {input_name!r} must be an identifier, not a keyword, not starting with '_'"
        elif input_name in RESERVED_NAMES:
            message = f"input name {input_name!r} is reserved by the generated forward"
        elif input_name in seen:
            message = f"input {input_name!r} is listed twice"
        elif input_name in owned:
            message = f"input {input_name!r} has the name of a layer or tensor of this Graph"
        else:
            message = ""
        if message:
            problems.add(source.problem((*path, "inputs", k), message))
        seen.add(input_name)


__all__ = ["check_child_name", "check_graph_inputs"]
