"""Sharding-invariant initialisation: meta construction, a coverage check, and the replay.

In: the compiled tree (``RNode``s and fx graphs) of a spec. Out:

* ``build_meta_tracked`` — the model on the meta device plus the names of tensors that a
  constructor created with ``torch.empty`` and never filled (a registered layer that expects
  someone else to initialise it). Nothing is allocated.
* ``replay`` — for a model whose parameters are already sharded and allocated (FSDP after
  ``to_empty``): every layer's construction is recorded on meta and replayed op by op on the
  rank's device, in document order, exactly as the single-process build constructs it, so the
  random stream advances identically (``deferred``); each tensor is allocated when an op first
  touches it and, after the last op that does, written into the sharded model (each rank
  keeping its shard) and dropped. A layer whose construction cannot be recorded faithfully is
  constructed whole instead. Graph-owned tensors (``sinusoidal``, ``tril``, parameters with an
  ``init``) are made one at a time the same way. The spec's ``init:`` rules then run over the
  sharded model (``training.init`` generates each full parameter, then keeps the shard),
  continuing the same stream.

So the gathered state_dict is bit-identical to ``netspec.build`` in one process with the same
seed, and a rank holds its shards plus one full tensor at a time (for an ``LSTM``, one gate
matrix, not all of them; a layer built whole as the fallback: that layer's tensors).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
import torch.fx as fx
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from ..compiler.construct import build_tree, make_tensor
from ..compiler.resolve import RNode
from ..training.init import init_functions
from ..training.patterns import join_name
from ..training.sharded import write_full
from .deferred import record

META = torch.device("meta")
_EMPTY_OPS = frozenset(
    {"aten::empty", "aten::empty_strided", "aten::empty_like", "aten::new_empty", "aten::new_empty_strided"}
)


class _EmptyTracker(TorchDispatchMode):
    """Records the storages of tensors created empty, and forgets each one as soon as an op writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.unfilled: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        schema = func._schema
        if schema.name in _EMPTY_OPS and isinstance(out, torch.Tensor):
            self.unfilled.add(out.untyped_storage()._cdata)
            return out
        if self.unfilled and schema.is_mutable:
            values = list(args) + [kwargs.get(a.name) for a in schema.arguments[len(args) :]]
            for arg, value in zip(schema.arguments, values, strict=False):
                if arg.alias_info is not None and arg.alias_info.is_write and isinstance(value, torch.Tensor):
                    self.unfilled.discard(value.untyped_storage()._cdata)
        return out


class _InitsFill(TorchFunctionMode):
    """``torch.nn.init`` functions count as filling their tensor, and on meta they compute nothing
    (so a 70B model is checked in a second, as ``compiler.shapes.SkipInit`` does for validation)."""

    def __init__(self, tracker: _EmptyTracker) -> None:
        super().__init__()
        self.tracker = tracker
        self.functions = frozenset(init_functions().values())

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func in self.functions:
            tensor = args[0] if args else next(iter(kwargs.values()))
            self.tracker.unfilled.discard(tensor.untyped_storage()._cdata)
            return tensor
        return func(*args, **kwargs)


def named_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Every parameter and buffer (non-persistent ones included), in state_dict order."""
    yield from model.named_parameters()
    yield from model.named_buffers()


def build_meta_tracked(
    root: RNode,
    graphs: Mapping[str, fx.Graph],
    dtype: torch.dtype | None,
    lazy_inputs: Mapping[str, tuple[torch.Size, ...]] | None = None,
) -> tuple[nn.Module, list[str]]:
    """The model on meta, and the names of its tensors that no constructor fills."""
    tracker = _EmptyTracker()
    with tracker, _InitsFill(tracker):
        model = build_tree(root, META, dtype, graphs, lazy_inputs)
    owned = set(_owned_tensors(root))  # a Graph's own tensors always have an init (zeros by default)
    unfilled = [
        name for name, t in named_tensors(model) if name not in owned and t.untyped_storage()._cdata in tracker.unfilled
    ]
    return model, unfilled


def _owned_tensors(node: RNode) -> Iterator[str]:
    indexed = node.kind == "ParameterList"
    for i, key in enumerate(node.tensors):
        yield join_name(node.name, str(i) if indexed else key)
    for child in node.children.values():
        yield from _owned_tensors(child)


def _target(model: nn.Module, name: str) -> torch.Tensor:
    owner_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    if leaf in owner._parameters and owner._parameters[leaf] is not None:
        return owner._parameters[leaf]  # type: ignore[return-value]
    if leaf in owner._buffers and owner._buffers[leaf] is not None:
        return owner._buffers[leaf]  # type: ignore[return-value]
    raise KeyError(f"the sharded model has no parameter or buffer {name!r}")


def replay(
    node: RNode,
    model: nn.Module,
    device: torch.device,
    dtype: torch.dtype | None,
    graphs: Mapping[str, fx.Graph],
    lazy_inputs: Mapping[str, tuple[torch.Size, ...]] | None = None,
    tied: frozenset[str] = frozenset(),
) -> list[str]:
    """Construct ``node``'s layers again on ``device`` in build order, writing their values into
    ``model`` (call inside the same seeded RNG context as a single-process build). ``tied``: the
    ``tie:`` keys, whose own values are drawn (the stream advances) but not written, since the
    tensor they share is their tie value's. Returns the names written."""
    written: list[str] = []

    def write(name: str, full: torch.Tensor) -> None:
        if name not in tied:
            write_full(_target(model, name), full.detach())
            written.append(name)

    if node.kind == "layer":
        recording = record(lambda: build_tree(node, META, dtype, graphs, lazy_inputs))
        if recording is not None:  # one full tensor at a time (deferred.py)
            recording.replay(device, lambda name, full: write(join_name(node.name, name), full))
            return written
        layer = build_tree(node, device, dtype, graphs, lazy_inputs)  # whole: nested module arguments first
        for name, full in named_tensors(layer):
            write(join_name(node.name, name), full)
        del layer
        return written
    for child in node.children.values():
        written += replay(child, model, device, dtype, graphs, lazy_inputs, tied)
    indexed = node.kind == "ParameterList"  # nn.ParameterList names its entries 0, 1, ...
    for i, (key, spec) in enumerate(node.tensors.items()):
        write(join_name(node.name, str(i) if indexed else key), make_tensor(spec, device, dtype))
    return written
