"""Generated ``forward`` code shared by every Graph module with the same graph.

In: an fx ``Graph`` (and the positions ``graph_module`` hoists ModuleList elements by). Out:
``code_key`` — a hashable key equal for two graphs exactly when fx generates the same code for
them (the nodes' ops, names, targets, arguments with their types, annotations and the
run-time branch marks; not the spec paths kept in ``node.meta``) or ``None`` when an argument
cannot be keyed (a tensor constant: such a graph is generated on its own) — and ``CodeCache``,
a bounded, locked map from key to the generated source, fx's ``PythonCode`` and the compiled
``forward`` function.

Why: ``torch.fx.GraphModule`` generates and ``compile``s Python for every instance (it makes a
class per instance), and compiles each child GraphModule again when its parent is made. The 32
blocks of a Llama are one graph four times over (block, attention, MLP, and the same again when
the parent compiles its children); with the cache each distinct graph is generated once per
process, and every other instance reuses the function: same code, same globals, so the same
computation. The key is built from the graph as it is when ``recompile`` runs, so a graph
edited afterwards gets its own code.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import torch.fx as fx

# node.meta keys the generated code depends on (graph_module's BRANCH, JOIN); the rest is provenance.
CODE_META = ("netspec_branch", "netspec_join")


class _Unkeyable(Exception):
    pass


def _freeze(value: Any) -> Hashable:
    """``value`` as a hashable key that also tells 1, 1.0 and True apart (they print differently)."""
    if isinstance(value, fx.Node):
        return ("node", value.name)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_freeze(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((_freeze(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, slice):
        return ("slice", _freeze(value.start), _freeze(value.stop), _freeze(value.step))
    if value is None or value is Ellipsis or isinstance(value, (bool, int, float, complex, str, bytes)):
        return (type(value).__name__, value)
    try:
        hash(value)
    except TypeError:
        raise _Unkeyable from None
    if type(value).__eq__ is not object.__eq__ and not isinstance(value, type) and not callable(value):
        return (type(value).__qualname__, repr(value), value)  # torch.dtype, torch.device, ...
    return ("id", id(value), value)  # functions, classes: the object itself (kept alive by the key)


def code_key(graph: fx.Graph, extra: Hashable = None) -> Hashable | None:
    """A key equal for graphs fx writes the same ``forward`` for (plus ``extra``); ``None`` if there is none."""
    try:
        nodes = tuple(
            (
                n.op,
                n.name,
                _freeze(n.target),
                _freeze(n.args),
                _freeze(n.kwargs),
                _freeze(n.type),
                tuple(_freeze(n.meta.get(k)) for k in CODE_META),
            )
            for n in graph.nodes
        )
    except _Unkeyable:
        return None
    return (nodes, extra)


@dataclass(frozen=True)
class Generated:
    """What ``GraphModule.recompile`` produced for one graph, kept on the class that holds its ``forward``."""

    src: str
    lineno_map: Any
    prologue_start: int | None
    python_code: Any  # fx.graph.PythonCode


class ClassCache:
    """Key -> the GraphModule class holding that graph's compiled ``forward``, the least recently used
    dropped past ``limit`` entries (its instances keep it alive); thread-safe."""

    def __init__(self, limit: int = 512) -> None:
        self.limit = limit
        self._entries: OrderedDict[Hashable, type] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> type | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: Hashable, cls: type) -> None:
        with self._lock:
            self._entries[key] = cls
            self._entries.move_to_end(key)
            while len(self._entries) > self.limit:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0


def positions_key(positions: Mapping[str, Mapping[str, int]]) -> Hashable:
    return tuple(sorted((name, tuple(sorted(p.items()))) for name, p in positions.items()))


CLASSES = ClassCache()
