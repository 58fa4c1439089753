"""A compiled Graph's ``torch.fx.Graph`` -> a real ``GraphModule`` whose ``forward`` is generated code.

In: the fx graph ``statements`` produced (run-time branches marked in ``node.meta`` with
``BRANCH``/``JOIN``), the built children and the Graph's own tensors. Out: ``make_graph_module``'s
``CompiledGraph``, a module whose ``forward`` is the Python a person writes: ``if training:``
branches, ModuleList/Sequential elements fetched once per call, spec-order registration; it
pickles its fx graph as records and hands TorchScript a plain equivalent. Graph modules with
the same graph share one class and its compiled ``forward`` (``code_cache``): the code is
generated once per distinct graph, not once per instance and again per parent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping
from contextvars import ContextVar
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.experimental import _config as fx_config

from .code_cache import CLASSES, Generated, code_key, positions_key
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

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # fx makes a class per instance (its forward is installed on the class). Identical graphs share
        # one (code_cache): made, generated and compiled for the first, reused by the others.
        key = _PENDING_KEY.get()
        shared = CLASSES.get(key) if key is not None else None
        if shared is not None:
            return nn.Module.__new__(shared)
        return super().__new__(cls, *args, **kwargs)

    def recompile(self) -> Any:
        """fx's ``recompile``, once per distinct graph: an instance of a class already holding this
        graph's code (an identical block, or this one again when its parent recompiles its children)
        only takes the generated source. A graph edited after construction gets a class of its own."""
        first = "_code" not in self.__dict__  # inside the constructor (make_graph_module's call)
        extra = self.__dict__.get("_netspec_extra")
        if first and extra is None:
            key = _PENDING_KEY.get()  # make_graph_module computed it from this very graph
        else:
            key = code_key(self._graph, extra) if extra is not None else None
        cls = type(self)
        owner = _forward_owner(cls)
        shared_key = owner.__dict__.get("_netspec_key") if owner is not None else None
        if key is not None and shared_key == key and not fx_config.enrich_profiler_metadata:
            generated: Generated = owner.__dict__["_netspec_generated"]  # type: ignore[union-attr]
            self._code, self._lineno_map, self._prologue_start = (
                generated.src,
                generated.lineno_map,
                generated.prologue_start,
            )
            return generated.python_code
        if shared_key is not None:  # its forward is a shared one, and this graph is no longer that graph
            self.__class__ = cls = private_class(cls)
        # Share the class if fx just made it for this instance (an fx GraphModuleImpl, no forward yet).
        # A subclass (eval-frozen by freeze:, FSDP's FSDP<Name>, a private class) is never shared.
        fresh = owner is None and "forward" not in cls.__dict__ and cls.__mro__[1] is CompiledGraph
        # GraphModule.recompile also recompiles every GraphModule child; in the constructor they were just
        # compiled themselves (make_graph_module builds children first), so that would only do it twice.
        self.__dict__["_netspec_skip_children"] = first
        try:
            python_code = super().recompile()
        finally:
            del self.__dict__["_netspec_skip_children"]
        if key is not None and fresh and not fx_config.enrich_profiler_metadata:
            cls._netspec_key = key
            cls._netspec_generated = Generated(self._code, self._lineno_map, self._prologue_start, python_code)
            CLASSES.put(key, cls)
        return python_code

    def _recompile_submodules(self) -> list[tuple[str, Any]]:
        if self.__dict__.get("_netspec_skip_children"):
            return []
        return super()._recompile_submodules()

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
_REBUILT_BY_FX = frozenset(
    {"_graph", "_code", "_lineno_map", "_prologue_start", "_tracer_cls", "_tracer_extras", "_netspec_extra"}
)
# The code key of the CompiledGraph being constructed (its graph, class name and hoisting positions):
# __new__ and the first recompile run inside the constructor, before make_graph_module can set anything
# on the instance; later recompiles compute it again from the graph as it is then.
_PENDING_KEY: ContextVar[Hashable | None] = ContextVar("netspec_pending_key", default=None)


def _forward_owner(cls: type) -> type | None:
    """The class whose ``forward`` instances of ``cls`` run, if it is a shared one (``None`` otherwise)."""
    for klass in cls.__mro__:
        if "forward" in klass.__dict__:
            return klass if "_netspec_key" in klass.__dict__ else None
    return None


def private_class(cls: type) -> type:
    """A subclass of ``cls`` for one instance, on which fx installs that instance's own ``forward``. It
    keeps ``cls``'s call wrapper: a second ``_WrappedCall`` would call the first one's ``super()`` in a
    loop (the same reason ``training.freeze`` shares it)."""
    namespace = {"_wrapped_call": cls._wrapped_call, "__module__": cls.__module__, "__qualname__": cls.__qualname__}  # type: ignore[attr-defined]
    return type(cls.__name__, (cls,), namespace)


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
        positions = hoistable_positions(children)
        graph.on_generate_code(_fast_codegen(positions))
        extra = (class_name, positions_key(positions))  # what the code depends on besides the graph
        key = code_key(graph, extra)
        token = _PENDING_KEY.set(key)
        try:
            gm: fx.GraphModule = CompiledGraph(root, graph, class_name=class_name)  # forward: generated or shared
        finally:
            _PENDING_KEY.reset(token)
        gm._netspec_extra = extra
    else:
        gm = fx.GraphModule(root, graph, class_name=class_name)
    # GraphModule copies only what the graph references, in graph order, and fills dotted targets
    # ("blocks.0") with plain nn.Modules: register exactly the spec's children and tensors instead.
    for table in ("_modules", "_parameters", "_buffers"):
        mine = getattr(gm, table)
        mine.clear()
        mine.update(getattr(root, table))
    gm._non_persistent_buffers_set = set(root._non_persistent_buffers_set)
    return gm
