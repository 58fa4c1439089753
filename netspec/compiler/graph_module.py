"""A compiled Graph's ``torch.fx.Graph`` -> a real ``GraphModule`` whose ``forward`` is generated code.

In: the fx graph ``statements`` produced (run-time branches marked in ``node.meta`` with
``BRANCH``/``JOIN``), the built children and the Graph's own tensors. Out: ``make_graph_module``'s
``CompiledGraph``, a module whose ``forward`` is the Python a person writes: ``if training:``
branches, ModuleList/Sequential elements fetched once per call, spec-order registration; it
pickles its fx graph as records and hands TorchScript a plain equivalent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from .graph_records import NodeRecord, graph_from_records, graph_records

# node.meta keys of a run-time ``a if training else b``: each branch node carries (join id, branch), the
# joining node its id; ``_branch_codegen`` turns them into an ``if training:`` / ``else:`` in forward.
BRANCH, JOIN = "netspec_branch", "netspec_join"


_INDEXED_CHILD = re.compile(r'getattr\(self\.([A-Za-z]\w*), "(\d+)"\)')


def hoistable_positions(children: Mapping[str, nn.Module]) -> dict[str, dict[str, int]]:
    """For each child ModuleList/Sequential whose names are exactly ``"0".."n-1"`` in order: name -> position.

    Only these may be indexed as ``tuple(self.X)[i]``: in a mapping-form Sequential (keys ``"1", "0"``) or a
    ModuleDict with digit keys (``"8", "16"``) the name is not the position, and they keep ``getattr``."""
    out: dict[str, dict[str, int]] = {}
    for name, child in children.items():
        if not isinstance(child, (nn.ModuleList, nn.Sequential)):
            continue
        keys = list(child._modules)
        if keys == [str(i) for i in range(len(keys))]:
            out[name] = {key: i for i, key in enumerate(keys)}
    return out


def _hoist_indexed_children(body: list[str], positions: Mapping[str, Mapping[str, int]]) -> list[str]:
    """``getattr(self.hidden, "3")(h)`` costs two ``nn.Module.__getattr__`` calls per use; a hand-written
    ``for layer in self.hidden`` costs one iteration step. Fetch each hoistable container's elements once
    at the top of forward (``_hidden = tuple(self.hidden)``) and index that tuple by the element's position
    (``positions``, from the registered children); every other ``getattr`` stays as fx wrote it."""
    used: set[str] = set()

    def replace(m: re.Match[str]) -> str:
        container, key = m.group(1), m.group(2)
        position = positions.get(container, {}).get(key)
        if position is None:
            return m.group(0)
        used.add(container)
        return f"_{container}[{position}]"

    rewritten = [_INDEXED_CHILD.sub(replace, line) for line in body]
    if not used:
        return body
    return [f"_{name} = tuple(self.{name})\n" for name in sorted(used)] + rewritten


_COUNTER = re.compile(r"# COUNTER: (\d+)$")
_FREED = re.compile(r"\w+(?: = \w+)* = None")


def _branch_codegen(graph: fx.Graph, previous: Any) -> Any:
    """Write each run-time ``a if training else b`` as ``if training: ... else: ...`` so that only the
    taken branch runs (and draws random numbers): fx's straight-line code would compute both.

    fx marks the start of each node's code with ``# COUNTER: i``; the lines of a branch's nodes are
    indented under the ``if``/``else``, and the joining node's line becomes the two assignments."""

    def transform(body: list[str]) -> list[str]:
        body = previous(body) if previous is not None else body
        nodes = list(graph.nodes)
        if not any(JOIN in n.meta for n in nodes):
            return body
        chunks: list[tuple[fx.Node | None, list[str]]] = [(None, [])]
        for piece in body:
            found = _COUNTER.search(piece.strip())
            if found is not None:
                chunks.append((nodes[int(found.group(1))], [piece]))
            else:
                chunks[-1][1].append(piece)
        out: list[str] = []
        pending: dict[bool, list[str]] = {True: [], False: []}
        freed: list[str] = []
        for n, pieces in chunks:
            if n is not None and BRANCH in n.meta:
                # Values are freed after the if/else: TorchScript refuses `v = None` inside a branch.
                code, sep, tail = "".join(pieces).rpartition(";  ")
                if sep and _FREED.fullmatch(tail.strip()):
                    freed.extend(tail.strip().removesuffix(" = None").split(" = "))
                    pieces = [code + "\n"]
                pending[n.meta[BRANCH][1]].append("".join(pieces))
                continue
            if n is None or JOIN not in n.meta:
                out.extend(pieces)
                continue
            flag, if_training, if_eval = n.args
            marker, code = pieces[0], "".join(pieces[1:])
            _, sep, tail = code.rpartition(";  ")
            if sep and _FREED.fullmatch(tail.strip()):
                freed.extend(tail.strip().removesuffix(" = None").split(" = "))
            out.append(marker)
            out.append(f"if {flag!r}:\n")
            for branch, value in ((True, if_training), (False, if_eval)):
                if not branch:
                    out.append("else:\n")
                out.extend(_indent(text) for text in pending[branch])
                out.append(f"    {n.name} = {value!r}\n")
            if freed:
                out.append(" = ".join(dict.fromkeys(freed)) + " = None\n")
            pending, freed = {True: [], False: []}, []
        return out

    return transform


def _indent(text: str) -> str:
    return "".join("    " + line if line.strip() else line for line in text.splitlines(keepends=True))


def _fast_codegen(positions: Mapping[str, Mapping[str, int]]) -> Callable[[Any], Any]:
    def install(previous: Any) -> Any:
        def transform(body: list[str]) -> list[str]:
            return _hoist_indexed_children(previous(body) if previous is not None else body, positions)

        return transform

    return install


class CompiledGraph(fx.GraphModule):
    """A GraphModule whose forward fetches ModuleList/Sequential elements once per call.

    TorchScript cannot compile ``tuple(self.hidden)``, so ``torch.jit.script`` is handed an
    equivalent GraphModule with fx's plain code (same children and tensors, not copies).
    """

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle the fx graph itself (``graph_records``), the children, tensors and module state:
        fx's own ``GraphModule.__reduce__`` re-traces the generated code on load, which loses the
        class name and breaks on statements such as a buffer slice."""
        state = {k: v for k, v in self.__dict__.items() if k not in _REBUILT_BY_FX}
        children, params, buffers = state.pop("_modules"), state.pop("_parameters"), state.pop("_buffers")
        persistent = {k: k not in self._non_persistent_buffers_set for k in buffers}
        tensors = {**params, **buffers}
        args = (dict(children), tensors, persistent, graph_records(self.graph), type(self).__name__)
        return (_rebuild_compiled_graph, args, state)

    def __prepare_scriptable__(self) -> fx.GraphModule:
        plain = fx.Graph()
        plain.output(plain.graph_copy(self.graph, {}))
        tensors = {**dict(self.named_parameters(recurse=False)), **dict(self.named_buffers(recurse=False))}
        persistent = {k: k not in self._non_persistent_buffers_set for k in tensors}
        scriptable = make_graph_module(
            dict(self.named_children()), tensors, persistent, plain, type(self).__name__, fast=False
        )
        scriptable.training = self.training  # only this module's flag: the children are shared, not copies
        return scriptable


# What GraphModule's constructor sets from the graph (code, line map, tracer): rebuilt, not pickled.
_REBUILT_BY_FX = frozenset({"_graph", "_code", "_lineno_map", "_prologue_start", "_tracer_cls", "_tracer_extras"})


def _rebuild_compiled_graph(
    children: Mapping[str, nn.Module],
    tensors: Mapping[str, torch.Tensor],
    persistent: Mapping[str, bool],
    records: tuple[NodeRecord, ...],
    class_name: str,
) -> fx.GraphModule:
    """Unpickling entry point of ``CompiledGraph``: the module rebuilt from its graph's records."""
    return make_graph_module(children, tensors, persistent, graph_from_records(records), class_name)


def make_graph_module(
    children: Mapping[str, nn.Module],
    tensors: Mapping[str, torch.Tensor],
    buffers_persistent: Mapping[str, bool],
    graph: fx.Graph,
    class_name: str,
    *,
    fast: bool = True,
) -> fx.GraphModule:
    """A GraphModule whose children, parameters and buffers are registered in spec order, with real types."""
    root = nn.Module()
    for name, child in children.items():
        root.add_module(name, child)
    for name, tensor in tensors.items():
        if isinstance(tensor, nn.Parameter):
            root.register_parameter(name, tensor)
        else:
            root.register_buffer(name, tensor, persistent=buffers_persistent.get(name, True))
    graph.on_generate_code(lambda previous: _branch_codegen(graph, previous))
    if fast:
        graph.on_generate_code(_fast_codegen(hoistable_positions(children)))
    kind = CompiledGraph if fast else fx.GraphModule
    gm = kind(root, graph, class_name=class_name)  # generates and compiles forward once
    # GraphModule copies only what the graph references, in graph order, and fills dotted targets
    # ("blocks.0") with plain nn.Modules: register exactly the spec's children and tensors instead.
    for table in ("_modules", "_parameters", "_buffers"):
        mine = getattr(gm, table)
        mine.clear()
        mine.update(getattr(root, table))
    gm._non_persistent_buffers_set = set(root._non_persistent_buffers_set)
    return gm
