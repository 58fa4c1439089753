"""How many modules a spec expands to, counted on the document before anything is expanded.

In: the ``SpecModel`` (nodes, blocks, vars). Out: ``check_expansion`` raises ``SpecError`` when the
model or loss would expand to more modules than the ``Budget`` allows, naming the chain of
multipliers that does it (``model.layers.0 repeat 1000 × model.layers.0.layer repeat 1000``, a
block used twice by a block used twice ...); ``estimate`` gives one node's count for the checks the
resolver makes as it goes (repeat counts that depend on block params are known only then).

Repeat counts are read from literals and from ``${...}`` over the vars; a count that depends on
something else (a block param) counts once here and is checked again when it is known. Torch count
arguments count too: ``num_layers`` of TransformerEncoder/Decoder copies its layer, that of
LSTM/GRU/RNN makes one set of weights per layer. Block sizes are computed once each, in dependency
order with an explicit stack, so thirty blocks each using the next twice cost thirty steps, not 2**30,
and a chain of ten thousand blocks cannot exhaust Python's stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from ..errors import SpecError, SpecPath, format_path
from ..frontend import exprs
from ..frontend.budget import Budget
from ..frontend.models import (
    BlockSpec,
    GraphNode,
    LayerNode,
    ModuleDictNode,
    ModuleListNode,
    Node,
    ParameterDictNode,
    ParameterListNode,
    RepeatItem,
    SequentialNode,
    SpecModel,
)
from ..frontend.source import Source

NODE_ADAPTER: TypeAdapter[Any] = TypeAdapter(Node)  # a node written as plain data (a layer argument)
CAP = 10**18  # counts saturate here: the limit is far lower, and huge ints would only cost time
_COPYING = {"TransformerEncoder": "encoder_layer", "TransformerDecoder": "decoder_layer"}
_STACKED = frozenset({"LSTM", "GRU", "RNN"})


@dataclass(frozen=True)
class Count:
    """Modules a node expands to, and the chain of multipliers along its largest part."""

    modules: int
    chain: tuple[str, ...] = ()

    def times(self, factor: int, step: str) -> Count:
        return Count(min(self.modules * factor, CAP), (step, *self.chain))


_ONE = Count(1)  # a layer with no layer arguments (what ``_plus([])`` gives)


def _plus(counts: list[Count], base: int = 1) -> Count:
    total = min(base + sum(c.modules for c in counts), CAP)
    biggest = max(counts, key=lambda c: c.modules, default=Count(0))
    return Count(total, biggest.chain)


class Estimator:
    """Counts modules per node; block counts are memoised (see ``block_counts``)."""

    def __init__(self, spec: SpecModel, scope: Mapping[str, Any]) -> None:
        self.spec, self.scope = spec, scope
        self.blocks: dict[str, Count] = {}

    def with_scope(self, scope: Mapping[str, Any]) -> Estimator:
        """The same block counts, with repeat counts read in ``scope`` (a block instance's params)."""
        other = Estimator(self.spec, scope)
        other.blocks = self.blocks
        return other

    def count_of(self, value: Any) -> int:
        """A repeat count or num_layers: an int, or ``${...}`` over the vars; 1 when not known yet."""
        if isinstance(value, str) and "${" in value:
            try:
                value = exprs.substitute(value, self.scope)
            except exprs.ExprError:
                return 1
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 1

    def node(self, node: Any, path: SpecPath) -> Count:
        if isinstance(node, LayerNode):
            return self.layer(node, path)
        if isinstance(node, RepeatItem):
            n = self.count_of(node.repeat)
            return self.node(node.layer, (*path, "layer")).times(n, f"{format_path(path)} repeat {n:,}")
        if isinstance(node, (SequentialNode, ModuleListNode)):
            if node.layers is None:
                if node.layer is None:
                    return Count(1)
                n = self.count_of(node.repeat)
                inner = self.node(node.layer, (*path, "layer")).times(n, f"{format_path(path)} repeat {n:,}")
                return _plus([inner])
            return self.children(node.layers, (*path, "layers"))
        if isinstance(node, (ModuleDictNode, GraphNode)):
            return self.children(node.layers, (*path, "layers"))
        if isinstance(node, (ParameterListNode, ParameterDictNode)):
            return Count(1 + len(node.parameters))
        return Count(1)

    def children(self, layers: Any, path: SpecPath) -> Count:
        items = layers.items() if isinstance(layers, Mapping) else enumerate(layers or [])
        return _plus([self.node(child, (*path, key)) for key, child in items])

    def layer(self, node: LayerNode, path: SpecPath) -> Count:
        name = node.type
        if name in self.spec.blocks:
            inner = self.blocks.get(name, Count(1))
            return Count(inner.modules, (f"block {name} at {format_path(path)}", *inner.chain))
        args = node.args
        parts: list[Count] = []
        for key, value in args.items():
            if isinstance(value, Mapping) and isinstance(value.get("type"), str):
                parts.append(self.raw(value, (*path, key)))
        if name in _COPYING and "num_layers" in args:
            n = self.count_of(args["num_layers"])
            layer = next((p for p in parts), Count(1))
            step = f"{format_path((*path, 'num_layers'))} {n:,} copies of {_COPYING[name]}"
            return _plus([layer, layer.times(n, step)])
        if name in _STACKED and "num_layers" in args:
            n = self.count_of(args["num_layers"])
            return Count(min(1 + n, CAP), (f"{format_path((*path, 'num_layers'))} {n:,} layers",))
        return _plus(parts) if parts else _ONE

    def raw(self, value: Mapping[str, Any], path: SpecPath) -> Count:
        """A node written as a layer argument (still plain data): validated the way the resolver does."""
        try:
            return self.node(NODE_ADAPTER.validate_python(value), path)
        except ValueError:  # the resolver reports it
            return Count(1)

    def block_counts(self) -> None:
        """Every block's count, each computed once, after the blocks its body uses (explicit stack)."""
        uses = {name: _used_blocks(block, self.spec.blocks) for name, block in self.spec.blocks.items()}
        state: dict[str, int] = {}  # 1: on the stack, 2: done
        for start in self.spec.blocks:
            todo = [start]
            while todo:
                name = todo[-1]
                if state.get(name) == 2:
                    todo.pop()
                    continue
                state[name] = 1
                pending = [u for u in uses[name] if state.get(u) is None]
                if pending:
                    todo.extend(pending)
                    continue
                todo.pop()
                state[name] = 2  # a cycle (reported by the resolver) leaves the inner count at 1
                body = self.spec.blocks[name].body
                self.blocks[name] = self.node(body, ("blocks", name, "body"))


def _used_blocks(block: BlockSpec, blocks: Mapping[str, Any]) -> list[str]:
    """Names of the blocks a block's body uses (written as ``type:``), found with an explicit stack."""
    found: list[str] = []
    todo: list[Any] = [block.body]
    while todo:
        node = todo.pop()
        if isinstance(node, LayerNode):
            if node.type in blocks and node.type not in found:
                found.append(node.type)
            todo.extend(v for v in node.args.values() if isinstance(v, Mapping))
        elif isinstance(node, Mapping):
            if isinstance(node.get("type"), str) and node["type"] in blocks and node["type"] not in found:
                found.append(node["type"])
            todo.extend(v for v in node.values() if isinstance(v, (Mapping, list)))
        elif isinstance(node, list):
            todo.extend(node)
        elif isinstance(node, RepeatItem):
            todo.append(node.layer)
        elif isinstance(node, (SequentialNode, ModuleListNode)):
            todo.extend([node.layer] if node.layers is None else list(_values(node.layers)))
        elif isinstance(node, (ModuleDictNode, GraphNode)):
            todo.extend(node.layers.values())
    return found


def _values(layers: Any) -> list[Any]:
    return list(layers.values()) if isinstance(layers, Mapping) else list(layers or [])


def describe(count: Count) -> str:
    """``a × b × c``: the chain of multipliers, at most six steps."""
    steps = list(count.chain[:6]) + (["..."] if len(count.chain) > 6 else [])
    return " × ".join(steps) if steps else "the model"


def check_expansion(spec: SpecModel, source: Source, scope: Mapping[str, Any], budget: Budget) -> Estimator:
    """Raise ``SpecError`` when the model (or loss) would pass the module budget; return the estimator."""
    estimator = Estimator(spec, scope)
    estimator.block_counts()
    for section, node in (("model", spec.model), ("loss", spec.loss)):
        if node is None:
            continue
        count = estimator.node(node, (section,))
        if count.modules > budget.max_modules:
            first = count.chain[0] if count.chain else section
            path = _path_of(first, section)
            message = (
                f"{section} expands to {count.modules:,} modules, more than the limit of {budget.max_modules:,}: "
                f"{describe(count)}"
            )
            hint = "lower the repeat counts or num_layers, or use a block fewer times"
            raise SpecError(source.problem(path, message, hint=hint))
    return estimator


def _path_of(step: str, section: str) -> SpecPath:
    """The spec path a chain step starts with (``model.layers.0 repeat 10`` -> ``("model", "layers", 0)``)."""
    text = step.removeprefix("block ").split(" at ")[-1].split(" ")[0]
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in text.split(".")]
    return tuple(parts) if parts and parts[0] in ("model", "loss", "blocks") else (section,)


__all__ = ["NODE_ADAPTER", "Count", "Estimator", "check_expansion", "describe"]
