"""Non-persistent buffers for ``netspec.emit``: the values a spec must carry because no state_dict does.

In: a buffer registered with ``persistent=False`` whose values no named ``init`` reproduces (timm's
BlurPool filter and Swin's shifted-window masks, BEiT's and LeViT's relative position indexes,
CSATv2's DCT statistics) and how messages name it. Out: the ``init`` that writes every element out
(``compiler.values``: a list of numbers, or for a large table its packed bytes), so the spec alone
rebuilds the buffer bit for bit and it stays out of the state_dict as in the original; or
``EmitError`` for a buffer whose packed text would pass ``MAX_PACKED_CHARS``. A persistent buffer
never comes here: its values travel in the state_dict.
"""

from __future__ import annotations

from typing import Any

import torch

from ..compiler.values import written
from ..errors import EmitError

# The longest packed table a spec carries (base64 characters): Swin's shifted-window mask packs into
# under 2,000, BEiT's 197x197 relative position index into about 8,000.
MAX_PACKED_CHARS = 1 << 20


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


__all__ = ["MAX_PACKED_CHARS", "written_values"]
