"""Values a traced forward stores on its module (a cache), and whether a Graph may compute them every call.

In: the shallow copy of a module that was traced (``trace._tracing_copy``) and the original module. Out:
nothing, or ``EmitError``. ``self.rel_indices = self.get_rel_indices(N)`` (timm's ConViT, under ``if
self.rel_indices.shape[1] != N``) leaves a traced value on the copy: the original computes it once and
reads it back on later calls, while the emitted Graph computes it on every call. The two agree only when
the value is the same on every call — computed from sizes, dtypes and devices (metadata), constants and
factories alone. A stored value computed from the data of an input, a parameter or a buffer (a running
average, a cache of the first batch's features) would be stale in the original and fresh in the Graph,
and is refused, naming the attribute.
"""

from __future__ import annotations

from typing import Any

import torch.fx as fx
import torch.nn as nn

from ..errors import EmitError
from .layers import where
from .modes import CONSTANT_PREFIX

# Reads of a tensor's metadata only: what they compute does not depend on the tensor's values.
_META_METHODS = frozenset({"size", "dim", "ndimension", "numel", "nelement", "is_floating_point", "element_size"})
_META_ATTRIBUTES = frozenset({"shape", "ndim", "dtype", "device", "is_cuda"})


def _data_source(node: fx.Node) -> fx.Node | None:
    """An input or registered tensor whose values ``node`` is computed from, or None."""
    seen: set[fx.Node] = set()
    todo = [node]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "placeholder" or (n.op == "get_attr" and not str(n.target).startswith(CONSTANT_PREFIX)):
            return n
        metadata = (n.op == "call_method" and str(n.target) in _META_METHODS) or (
            n.op == "call_function" and n.target is getattr and len(n.args) > 1 and n.args[1] in _META_ATTRIBUTES
        )
        if not metadata:
            todo.extend(n.all_input_nodes)
    return None


def check_stored(copied: nn.Module, module: nn.Module, path: str) -> None:
    """Refuse a traced value that forward stored on the module (buffer or attribute) unless it is computed
    from metadata, constants and factories alone (then computing it on every call gives the same)."""
    stored: dict[str, Any] = {k: v for k, v in copied._buffers.items() if module._buffers.get(k) is not v}
    stored.update({k: v for k, v in vars(copied).items() if isinstance(v, fx.Proxy) and vars(module).get(k) is not v})
    for name, value in stored.items():
        if not isinstance(value, fx.Proxy):
            continue
        source = _data_source(value.node)
        if source is None:
            continue
        what = f"the input {source.target!r}" if source.op == "placeholder" else f"the tensor {source.target!r}"
        raise EmitError(
            f"{where(path, module)}: forward stores a value computed from the values of {what} in self.{name} (a cache "
            "that later calls read instead of computing it); the emitted Graph computes it on every call, so the "
            "rebuilt model would differ from the original from the second call on"
            "\n    hint: compute the value in forward without storing it on the module"
        )


__all__ = ["check_stored"]
