"""Non-persistent buffers for ``netspec.emit``: the values a spec must carry because no state_dict does.

In: a buffer registered with ``persistent=False`` whose values no named ``init`` reproduces (timm's
BlurPool filter, Swin v2's log-spaced relative coordinates, CSATv2's DCT statistics) and how messages
name it. Out: the ``init`` that writes every element out, ``{fn: values, data: [...]}`` (row-major),
so the spec alone rebuilds the buffer bit for bit and it stays out of the state_dict as in the
original; or ``EmitError`` for a buffer too large to write out or holding a value a spec cannot hold
(``nan``, ``inf``). A persistent buffer never comes here: its values travel in the state_dict.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..compiler.tree import VALUES_INIT
from ..errors import EmitError

# Elements a spec writes out for one buffer: a 1024-channel 3x3 blur filter (9,216) fits, a cached
# attention mask of a whole feature map does not (that is a cache forward should compute).
MAX_WRITTEN = 16_384


def written_values(tensor: torch.Tensor, where: str) -> dict[str, Any]:
    """``{fn: values, data: [...]}`` holding ``tensor`` exactly (Python floats hold every float32, float16
    and bfloat16 value, and float64's by ``repr``)."""
    if tensor.device.type == "meta":
        raise EmitError(f"{where}: a non-persistent buffer on the meta device has no values to write out")
    if tensor.numel() > MAX_WRITTEN:
        raise EmitError(
            f"{where}: a non-persistent buffer of {tensor.numel():,} elements (shape {list(tensor.shape)}) that "
            f"no init reproduces; a spec writes out at most {MAX_WRITTEN:,}, and the state_dict does not hold it"
            "\n    hint: make it persistent (register_buffer(..., persistent=True)), or compute it in forward"
        )
    data = tensor.detach().cpu().reshape(-1).tolist()
    if tensor.is_floating_point() and not all(math.isfinite(v) for v in data):
        raise EmitError(
            f"{where}: a non-persistent buffer holding nan or inf, which a spec cannot write out; the state_dict "
            "does not hold it\n    hint: make it persistent (register_buffer(..., persistent=True))"
        )
    return {"fn": VALUES_INIT, "data": data}


__all__ = ["MAX_WRITTEN", "written_values"]
