"""Writing whole values into tensors that may be FSDP shards (``DTensor``s).

In: a target tensor (a plain tensor, or a ``DTensor`` whose local part is this rank's shard)
and either a full value or an in-place ``torch.nn.init``-style function. Out: the target
holding its part of that value. For a ``DTensor`` the full tensor is made on the shard's
device, filled exactly as one process would fill it (so the random stream advances the same
way on every rank), and only this rank's piece is kept; the full tensor is dropped at once,
so no rank holds more than the one full tensor being written.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch


def is_sharded(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a ``DTensor`` (a parameter FSDP has sharded)."""
    module = sys.modules.get("torch.distributed.tensor")  # never imported: nothing can be a DTensor (and
    return module is not None and isinstance(tensor, module.DTensor)  # a plain build does not pay for the import)


@torch.no_grad()
def write_full(target: torch.Tensor, full: torch.Tensor) -> None:
    """Copy the whole value ``full`` into ``target``; a ``DTensor`` keeps only its local shard."""
    if not is_sharded(target):
        target.copy_(full)
        return
    from torch.distributed.tensor import distribute_tensor

    dtensor: Any = target
    local = dtensor.to_local()
    # src_data_rank=None: split this rank's own copy of the full value; no communication.
    piece = distribute_tensor(
        full.to(device=local.device, dtype=local.dtype), dtensor.device_mesh, dtensor.placements, src_data_rank=None
    ).to_local()
    local.copy_(piece)


@torch.no_grad()
def fill_full(target: torch.Tensor, fill: Callable[[torch.Tensor], Any]) -> None:
    """Run ``fill`` (an in-place init function) on ``target`` as if it were one whole tensor."""
    if not is_sharded(target):
        fill(target)
        return
    dtensor: Any = target
    full = torch.empty(tuple(dtensor.shape), dtype=dtensor.dtype, device=dtensor.to_local().device)
    fill(full)
    write_full(target, full)
    del full
