"""Tensor factories called by a traced forward, recorded as graph calls while a guarded trace runs.

In: a guarded tracer (``guards.GuardMixin``). Out: ``recorded_factories(tracer)``, a context in which
``torch.ones/zeros/full/empty/arange`` called with a traced size or device (``torch.ones((b, n),
device=x.device)``), or by the traced forward itself with constant sizes and no ``device=``
(``torch.arange(14, dtype=torch.float32)``, ConViT's relative indices), make graph calls instead of
tensors, so what forward computes from them is recorded rather than stored as a constant; called while
an op runs on the examples (``tracer.running_examples``: a child's forward on fake tensors) they make
tensors as usual, as they do when another thread calls them meanwhile. One trace patches ``torch`` at a
time (the lock).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any, Protocol

import torch
import torch.fx as fx
from torch.utils._pytree import tree_flatten


class Recorder(Protocol):
    """What the factories need of the tracer."""

    running_examples: bool

    def create_proxy(self, kind: str, target: Any, args: Any, kwargs: Any) -> fx.Proxy: ...


# Tensor factories whose sizes may be traced values (``torch.ones((batch, length), device=x.device)``):
# while a guarded trace runs they are recorded as graph calls instead of reading the sizes as numbers.
FACTORY_NAMES = ("ones", "zeros", "full", "empty", "arange")
_PATCH_LOCK = threading.Lock()


def _recording(tracer: Recorder, original: Any, thread: int) -> Any:
    def factory(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() != thread:  # another thread of the program, while this one traces
            return original(*args, **kwargs)
        flat, _ = tree_flatten((args, kwargs))
        traced = any(isinstance(v, fx.Proxy) for v in flat)
        # called by the traced forward itself (not by a child run on the examples) with constant sizes and
        # no device: recorded too, so that what forward computes from it is recorded, not a constant tensor
        made_here = (
            not tracer.running_examples
            and "device" not in kwargs
            and not any(isinstance(v, torch.Tensor) for v in flat)
        )
        if traced or made_here:
            return tracer.create_proxy("call_function", original, args, kwargs)  # type: ignore[attr-defined]
        return original(*args, **kwargs)

    return factory


@contextlib.contextmanager
def recorded_factories(tracer: Recorder) -> Iterator[None]:
    """``torch.ones`` etc. recorded when a size or the device is a traced value (one trace at a time)."""
    with _PATCH_LOCK:
        originals = {name: getattr(torch, name) for name in FACTORY_NAMES}
        log = logging.getLogger("torch._subclasses.fake_tensor")  # an example op failing is no error here
        level = log.level
        log.setLevel(logging.CRITICAL)
        try:
            thread = threading.get_ident()
            for name, fn in originals.items():
                setattr(torch, name, _recording(tracer, fn, thread))
            yield
        finally:
            for name, fn in originals.items():
                setattr(torch, name, fn)
            log.setLevel(level)


__all__ = ["FACTORY_NAMES", "recorded_factories"]
