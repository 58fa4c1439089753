"""Buffers for ``netspec.emit``: the values a spec must carry because no state_dict does, and the
in-place updates forward makes to them.

In: a buffer registered with ``persistent=False`` whose values no named ``init`` reproduces (timm's
BlurPool filter and Swin's shifted-window masks, BEiT's and LeViT's relative position indexes,
CSATv2's DCT statistics) and how messages name it. Out: the ``init`` that writes every element out
(``compiler.values``: a list of numbers, or for a large table its packed bytes), so the spec alone
rebuilds the buffer bit for bit and it stays out of the state_dict as in the original; or
``EmitError`` for a buffer whose packed text would pass ``MAX_PACKED_CHARS``. A persistent buffer
never comes here: its values travel in the state_dict. ``simple_init``: the named ``init`` (zeros, ones, a
constant, netspec's fixed tables) that reproduces a tensor exactly, if any. ``take_buffer_updates``: in a
traced graph, the in-place updates of a module's own buffers (``num_batches_tracked.add_(1)``) -> Graph
update statements.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from ..catalog.windows import INTEGER_INITS
from ..compiler.allowlists import BUFFER_UPDATES
from ..compiler.construct import TENSOR_INITS
from ..compiler.values import written
from ..errors import EmitError

# The longest packed table a spec carries (base64 characters): Swin's shifted-window mask packs into
# under 2,000, BEiT's 197x197 relative position index into about 8,000.
MAX_PACKED_CHARS = 1 << 20


def simple_init(tensor: torch.Tensor) -> str | dict[str, Any] | None:
    """An ``init`` that reproduces ``tensor`` exactly (zeros, ones, constant, sinusoidal, tril), or None."""
    if tensor.device.type == "meta":
        return None
    with torch.no_grad():
        if not tensor.is_floating_point():
            if bool((tensor == 0).all()) or bool((tensor == 1).all()):
                return "zeros" if bool((tensor == 0).all()) else "ones"
            for name, make in INTEGER_INITS.items():  # Swin's/MaxViT's relative position index
                try:
                    table = make(tuple(tensor.shape), tensor.dtype, tensor.device)
                except ValueError:
                    continue
                if torch.equal(table, tensor):
                    return name
            return None
        if tensor.numel() == 0 or bool((tensor == 0).all()):
            return "zeros"
        if bool((tensor == 1).all()):
            return "ones"
        first = tensor.reshape(-1)[0]
        if bool((tensor == first).all()) and math.isfinite(float(first)):
            return {"fn": "constant", "val": float(first)}
        for name, make in TENSOR_INITS.items():  # netspec's own fixed tables (sinusoidal, tril, ...)
            try:
                table = make(tuple(tensor.shape), tensor.dtype, tensor.device)
            except (ValueError, RuntimeError):
                continue
            if table.shape == tensor.shape and torch.equal(table, tensor):
                return name
    return None


def written_values(tensor: torch.Tensor, where: str) -> dict[str, Any]:
    """``{fn: values, data: [...]}`` (or ``packed:``) holding ``tensor`` exactly."""
    if tensor.device.type == "meta":
        raise EmitError(f"{where}: a non-persistent buffer on the meta device has no values to write out")
    init = written(tensor)
    size = len(init.get("packed", ""))
    if size > MAX_PACKED_CHARS:
        raise EmitError(
            f"{where}: a non-persistent buffer of {tensor.numel():,} elements (shape {list(tensor.shape)}) that "
            f"no init reproduces packs into {size:,} characters, past the {MAX_PACKED_CHARS:,} a spec carries; "
            "the state_dict does not hold it"
            "\n    hint: make it persistent (register_buffer(..., persistent=True)), or compute it in forward"
        )
    return init


def take_buffer_updates(graph: fx.Graph, module: nn.Module) -> list[str]:
    """Take the in-place updates of ``module``'s own buffers out of ``graph`` (BatchNorm's training-only
    ``num_batches_tracked.add_(1)``) and return them as Graph statements (``num_batches_tracked.add_(1)``).

    Only an update of a buffer forward reads nowhere else, with constant arguments and an unused result,
    is taken: then where it stands in forward does not matter. Any other in-place write stays in the graph
    (the renderer refuses it, or writes it out of place where nothing else sees the change)."""
    own = {name for name, _ in module.named_buffers(recurse=False)}
    statements: list[str] = []
    for n in list(graph.nodes):
        if n.op != "call_method" or n.target not in BUFFER_UPDATES or n.users or not n.args:
            continue
        base = n.args[0]
        if not (isinstance(base, fx.Node) and base.op == "get_attr" and base.target in own and len(base.users) == 1):
            continue
        constants = (*n.args[1:], *n.kwargs.values())
        if not all(v is None or isinstance(v, (bool, int, float)) for v in constants):
            continue
        args = [repr(v) for v in n.args[1:]] + [f"{k}={v!r}" for k, v in n.kwargs.items()]
        statements.append(f"{base.target}.{n.target}({', '.join(args)})")
        graph.erase_node(n)
        graph.erase_node(base)
    return statements


__all__ = ["MAX_PACKED_CHARS", "simple_init", "take_buffer_updates", "written_values"]
