"""One layer's construction recorded on meta, then replayed on the real device one tensor at a time.

In: a callable that constructs a layer (``compiler.construct.build_tree`` of one layer node) on
the meta device. Out: ``record`` gives a ``Recording`` — the aten ops the constructor ran (its
``torch.empty``s, its ``reset_parameters``' ``uniform_``/``normal_``/..., a dtype cast), with
the meta module's tensors — or ``None`` when the construction cannot be replayed faithfully
(an op without a meta kernel, a random op that would draw on a real device while recording, a
tensor made outside the dispatcher). ``torch.tensor(data)``, which bypasses the dispatcher on
meta, is made on the CPU and copied, so its values are in the recording. Nothing real is drawn while
recording: meta kernels consume no random numbers, and a random op on a real tensor stops the
recording before it runs, so the caller can fall back to constructing the whole layer.

``Recording.replay(write)`` runs the ops again, in order, on the real device: the random ops
draw exactly what the single-process constructor draws (same ops, same order, same shapes).
A tensor is allocated only when an op first reads or writes it (an ``empty``, ``zeros`` or
other factory without randomness is deferred until then; views are rebuilt from their
storage, never replayed), and as soon as the last op touching it has run, each of the layer's
parameters and buffers living in it is handed to ``write(name, value)`` (which keeps this
rank's shard) and the full tensor is dropped. For a layer whose constructor initialises one
parameter after another (``Linear``: weight, then bias; ``LSTM``: each gate matrix in turn), a
rank holds at most one full parameter of it at a time, however many the layer has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.nn.parameter import UninitializedTensorMixin
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

_SEEDED = torch.Tag.nondeterministic_seeded


class NotReplayable(Exception):
    """The construction does something a replay could not reproduce bit for bit."""


@dataclass(frozen=True)
class _View:
    """A meta tensor as an op saw it: its storage and its geometry at that moment."""

    storage: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int
    dtype: torch.dtype


@dataclass
class _Op:
    func: Any
    args: Any  # args and kwargs with every meta tensor replaced by its _View
    kwargs: Any
    outputs: list[tuple[int, _View]]  # (position in the flattened outputs, view) of each fresh storage
    deferred: bool  # a factory without randomness: run when its output is first used
    storages: frozenset[int]  # every storage it reads or writes


def _storage(tensor: torch.Tensor) -> int:
    return int(tensor.untyped_storage()._cdata)


def _view(tensor: torch.Tensor) -> _View:
    return _View(_storage(tensor), tuple(tensor.shape), tuple(tensor.stride()), tensor.storage_offset(), tensor.dtype)


def _is_meta(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_meta


class _Constants(TorchFunctionMode):
    """``torch.tensor(data)`` on meta bypasses the dispatcher (its values would be lost): make it on the
    CPU and copy it to meta instead, a ``_to_copy`` the recording keeps and the replay repeats."""

    _FUNCTIONS = frozenset({torch.tensor, torch.as_tensor, torch.asarray, torch.Tensor.new_tensor})

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in self._FUNCTIONS and _is_meta(out):
            data = args[1] if func is torch.Tensor.new_tensor else args[0]
            if isinstance(data, torch.Tensor):
                raise NotReplayable(f"{func.__name__} of a tensor on meta")
            constant = func(*args, **{**kwargs, "device": "cpu"})
            return constant.to(out.device).requires_grad_(out.requires_grad)
        return out


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[_Op] = []
        self.created: dict[int, _View] = {}  # storage -> the view of the output that created it
        self.keep: list[torch.Tensor] = []  # every meta tensor seen: their storages stay alive and distinct

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        if any(isinstance(t, UninitializedTensorMixin) for t in flat):
            return func(*args, **kwargs)  # a lazy parameter's placeholder (its .data): no values, nothing to replay
        inputs = [t for t in flat if _is_meta(t)]
        real = [t for t in flat if isinstance(t, torch.Tensor) and not t.is_meta]
        device = kwargs.get("device")
        if _SEEDED in func.tags and (real or (device is not None and torch.device(device).type != "meta")):
            raise NotReplayable(f"{func} would draw random numbers on {real[0].device if real else device}")
        for tensor in inputs:
            if _storage(tensor) not in self.created:
                raise NotReplayable(f"{func} reads a tensor made outside the dispatcher (torch.tensor(data)?)")
        mapped_args, mapped_kwargs = tree_map(lambda t: _view(t) if _is_meta(t) else t, (args, kwargs))
        out = func(*args, **kwargs)
        flat_out, _ = tree_flatten(out)
        schema = func._schema
        view_op = bool(schema.returns) and all(
            r.alias_info is not None and not r.alias_info.is_write for r in schema.returns
        )
        if view_op:
            return out  # rebuilt from its storage wherever it is used
        fresh: list[tuple[int, _View]] = []
        for i, tensor in enumerate(flat_out):
            if _is_meta(tensor):
                self.keep.append(tensor)
                key = _storage(tensor)
                if key not in self.created:
                    self.created[key] = _view(tensor)
                    fresh.append((i, _view(tensor)))
        self.keep += inputs
        if not inputs and not fresh:
            return out  # ran on real tensors only (a constant): its result is used as recorded
        storages = frozenset([_storage(t) for t in inputs] + [v.storage for _, v in fresh])
        deferred = not inputs and _SEEDED not in func.tags
        self.ops.append(_Op(func, mapped_args, mapped_kwargs, fresh, deferred, storages))
        return out


@dataclass
class Recording:
    """The ops one layer's constructor ran on meta, and the layer's tensors (``record``)."""

    ops: list[_Op]
    tensors: dict[str, _View]  # parameter and buffer names -> the meta tensor at the end
    created: dict[int, _View]
    keep: list[torch.Tensor] = field(default_factory=list, repr=False)

    def replay(self, device: torch.device, write: Callable[[str, torch.Tensor], None]) -> None:
        """Run the ops on ``device`` in order; hand each tensor to ``write`` once it is final, then drop it."""
        last: dict[int, int] = {}
        for i, op in enumerate(self.ops):
            for key in op.storages:
                last[key] = i
        by_storage: dict[int, list[str]] = {}
        for name, view in self.tensors.items():
            by_storage.setdefault(view.storage, []).append(name)
        creator = {v.storage: i for i, op in enumerate(self.ops) for _, v in op.outputs}
        real: dict[int, torch.Tensor] = {}
        done: set[int] = set()

        def run(i: int) -> None:
            op = self.ops[i]
            done.add(i)
            for key in op.storages:
                if key not in real and creator.get(key, i) != i and creator[key] not in done:
                    run(creator[key])  # a deferred factory, now needed
            args, kwargs = tree_map(lambda v: on_device(v), (op.args, op.kwargs))
            flat, _ = tree_flatten(op.func(*args, **kwargs))
            for position, view in op.outputs:
                tensor = flat[position]
                if _view(tensor).__dict__ | {"storage": view.storage} != view.__dict__:
                    raise RuntimeError(f"{op.func} laid its output out differently on {device} than on meta")
                real[view.storage] = tensor

        def on_device(value: Any) -> Any:
            if isinstance(value, _View):
                return resolve(value)
            if isinstance(value, torch.device) and value.type == "meta":
                return device
            return value

        def resolve(view: _View) -> torch.Tensor:
            base = real[view.storage]
            if (tuple(base.shape), tuple(base.stride()), base.storage_offset()) == (
                view.size,
                view.stride,
                view.offset,
            ):
                return base
            return base.as_strided(view.size, view.stride, view.offset)

        def finish(key: int) -> None:
            for name in by_storage.pop(key, []):
                write(name, resolve(self.tensors[name]))
            real.pop(key, None)

        for i, op in enumerate(self.ops):
            if op.deferred or i in done:
                continue
            run(i)
            for key in op.storages:
                if last[key] == i:
                    finish(key)
        for key in list(by_storage):  # made by a factory and never touched again (zeros, ones)
            if key not in real:
                run(creator[key])
            finish(key)


def _named_tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    yield from module.named_parameters()
    yield from module.named_buffers()


@torch.no_grad()
def record(construct: Callable[[], nn.Module]) -> Recording | None:
    """``construct()`` (building on meta) recorded, or ``None`` when a replay could not reproduce it."""
    recorder = _Recorder()
    try:
        with recorder, _Constants():
            module = construct()
    except (NotReplayable, NotImplementedError, RuntimeError, TypeError, ValueError):
        return None  # nothing real was drawn: the caller constructs the layer whole instead
    tensors: dict[str, _View] = {}
    for name, tensor in _named_tensors(module):
        if not tensor.is_meta or _storage(tensor) not in recorder.created:
            return None  # made outside the dispatcher: its values are not in the recording
        view = _view(tensor)
        if recorder.created[view.storage].dtype != view.dtype:
            return None  # a reinterpreting view (tensor.view(dtype)): not rebuilt by as_strided
        tensors[name] = view
    for op in recorder.ops:
        for view in tree_flatten((op.args, op.kwargs))[0]:
            if isinstance(view, _View) and recorder.created[view.storage].dtype != view.dtype:
                return None
    return Recording(recorder.ops, tensors, recorder.created, recorder.keep + [t for _, t in _named_tensors(module)])
