"""``with torch.autocast(device_type=v.device.type, enabled=False):`` inside a traced forward.

In: a guarded trace (``guards``) of a forward that turns autocast *off* for some steps (timm's EfficientViT
``LiteMLA`` runs its linear attention so, in float32). Out: the steps recorded as usual, and the tensor whose
device names the autocast device (``v``) passed through ``expect_no_autocast(v)`` where the context is entered:
every later reader of ``v`` reads the checked value, so the check cannot be dropped as unused.

What that computes: without an enclosing autocast, ``autocast(enabled=False)`` changes nothing, and the Graph
computes what the original computes. Under an enclosing ``torch.autocast`` (mixed precision on a GPU) the
original would run those steps with autocast off and a Graph's statements would run them under it (a matmul in
float16 instead of float32). A spec has no statement for such a region, so the rebuilt module refuses that
case when it runs: ``expect_no_autocast`` raises while autocast is on for ``v``'s device. A fixed device type
(``torch.autocast("cpu", enabled=False)``; Hugging Face's rotary embeddings compute
``x.device.type if isinstance(x.device.type, str) ... else "cpu"``, which is ``x``'s device type when run but
``"cpu"`` while traced, as a traced attribute is no ``str``) is checked on the forward's first tensor input and
on that type: ``expect_no_autocast(x, 'cpu')`` raises when autocast is on for either, so the rebuilt module never
computes those steps under an autocast the original turned off. A context that turns autocast *on* (or whose
``enabled`` is a traced value) changes the computation in every call and is refused while tracing.

While a guarded trace runs, ``torch.autocast`` and ``torch.amp.autocast`` are a stand-in that records instead
of switching autocast (for the tracing thread only: any other thread gets torch's own), and both names are
restored afterwards. A trace without examples (no ``input_shape``) cannot know the device type, and fx would
enter the real context and record nothing (the region silently dropped), so there entering one is refused.
So is entering torch's own autocast class made any other way in the tracing thread
(``torch.amp.autocast_mode.autocast``, the deprecated ``torch.cuda.amp.autocast`` / ``torch.cpu.amp.autocast``,
a decorator): its ``__enter__`` is guarded while a trace runs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch
import torch.fx as fx
from torch.fx.proxy import Attribute, TraceError

from ..compiler.allowlists import expect_no_autocast
from .lists import EXAMPLE_KEY

CHECK = "netspec_autocast_check"  # node.meta key: the expect_no_autocast node, for rewire_checks


def _device_source(device_type: Any) -> fx.Proxy | None:
    """The traced tensor ``v`` of ``device_type = v.device.type`` (an attribute chain fx has not made nodes
    for yet), or None."""
    if not isinstance(device_type, Attribute) or device_type.attr != "type":
        return None
    device = device_type.root
    if not isinstance(device, Attribute) or device.attr != "device":
        return None
    return device.root if isinstance(device.root, fx.Proxy) else None


def _first_tensor_input(tracer: fx.Tracer | None) -> fx.Proxy | None:
    """The traced forward's first input whose example is a tensor (the device a fixed device type stands for)."""
    graph = getattr(tracer, "graph", None)
    for node in graph.nodes if graph is not None else ():
        if node.op == "placeholder" and isinstance(node.meta.get(EXAMPLE_KEY), torch.Tensor):
            return tracer.proxy(node)  # type: ignore[union-attr]
    return None


class _TraceState(threading.local):
    """Per thread: whether a traced forward runs now (not while a child runs on the examples), its tracer,
    and whether that trace has examples (an autocast region is recorded; without them, refused)."""

    active = False
    tracer: fx.Tracer | None = None
    examples = True


_STATE = _TraceState()


class _TracedAutocast:
    """Stand-in for ``torch.autocast`` while a trace runs (see the module docstring): it records (or refuses)
    only in the thread whose forward is being traced; anywhere else it makes torch's own autocast."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if not _STATE.active:
            return _ORIGINAL(*args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        device_type: Any,
        dtype: Any = None,
        enabled: Any = True,
        cache_enabled: Any = None,
    ) -> None:
        if not _STATE.examples:
            raise TraceError(
                "forward enters torch.autocast; emit follows an autocast region only when it traces with example "
                "inputs: pass input_shape="
            )
        if enabled is not False:
            raise TraceError(
                "forward enters torch.autocast with enabled="
                + ("a traced value" if isinstance(enabled, fx.Proxy) else repr(enabled))
                + ", which changes how the steps inside compute; a Graph has no statement for an autocast "
                "region (only autocast turned off, enabled=False, is emitted, checked at run time)"
            )
        source = _device_source(device_type)
        self.fixed: tuple[str, ...] = ()
        if source is None and isinstance(device_type, str):
            source, self.fixed = _first_tensor_input(_STATE.tracer), (device_type,)
        if source is None:
            raise TraceError(
                f"forward turns autocast off for the device type {device_type!r}; a Graph can only check the device "
                "of one of its values (torch.autocast(device_type=v.device.type, enabled=False)) or of its first "
                "tensor input"
            )
        self.source = source

    def __enter__(self) -> None:
        checked = self.source.tracer.create_proxy("call_function", expect_no_autocast, (self.source, *self.fixed), {})
        checked.node.meta[CHECK] = self.source.node

    def __exit__(self, *exc: object) -> bool:
        return False


_ORIGINAL = torch.amp.autocast
_REAL_ENTER = _ORIGINAL.__enter__
_INSTALL_LOCK = threading.RLock()  # one trace's stand-ins installed at a time


def _guarded_enter(self: Any) -> Any:
    """torch's ``autocast.__enter__``, refused while a forward is traced in this thread: the forward made the
    class some other way than ``torch.autocast(...)`` (``torch.amp.autocast_mode.autocast``, the deprecated
    ``torch.cuda.amp.autocast`` and ``torch.cpu.amp.autocast``, or a decorator), and entering it would record
    nothing."""
    if _STATE.active:
        raise TraceError(
            f"forward enters {type(self).__module__}.{type(self).__qualname__}, which a trace would not record; "
            "emit follows only `with torch.autocast(device_type=..., enabled=False):`"
        )
    return _REAL_ENTER(self)


def _install(cls: type, enter: Any) -> None:
    torch.autocast = torch.amp.autocast = cls  # type: ignore[misc]
    _ORIGINAL.__enter__ = enter  # type: ignore[method-assign]


@contextlib.contextmanager
def traced_autocast(tracer: fx.Tracer | None = None, *, examples: bool = True) -> Iterator[None]:
    """``torch.autocast`` and ``torch.amp.autocast`` as the stand-in for one trace (by ``tracer``, in this
    thread): recording (``examples``: a guarded trace), or refusing (a trace without examples, where the
    device type cannot be known and fx would otherwise enter the real context and record nothing)."""
    with _INSTALL_LOCK:
        before = (_STATE.active, _STATE.tracer, _STATE.examples)
        try:
            _install(_TracedAutocast, _guarded_enter)
            _STATE.active, _STATE.tracer, _STATE.examples = True, tracer, examples
            yield
        finally:
            _STATE.active, _STATE.tracer, _STATE.examples = before
            if not before[0]:
                _install(_ORIGINAL, _REAL_ENTER)


@contextlib.contextmanager
def real_autocast() -> Iterator[None]:
    """torch's own ``autocast`` while a trace runs its examples (a child run on fake tensors enters it as the
    original does): the stand-in, still installed, makes torch's own until this ends."""
    before = _STATE.active
    try:
        _STATE.active = False
        yield
    finally:
        _STATE.active = before


def rewire_checks(graph: fx.Graph) -> fx.Graph:
    """Every reader of ``v`` after an ``expect_no_autocast(v)`` reads the check's result instead (in place)."""
    order = {n: i for i, n in enumerate(graph.nodes)}
    for node in list(graph.nodes):
        source = node.meta.get(CHECK)
        if source is None:
            continue
        del node.meta[CHECK]
        at = order[node]
        later = lambda user, at=at, node=node: user is not node and order[user] > at  # noqa: E731
        source.replace_all_uses_with(node, delete_user_cb=later)
    return graph


__all__ = ["CHECK", "real_autocast", "rewire_checks", "traced_autocast"]
