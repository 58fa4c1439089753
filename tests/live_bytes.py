"""A dispatch-mode counter of the plain tensor storages torch's ops create, for memory-bound tests
and bench jobs (``tests/test_distributed_init.py``, ``bench/fsdp_init_job.py``).

In: the ops run while the mode is active. Out: ``peak``, the most bytes of storages those ops
created that were alive at once (torch keeps one Python object per storage: its finalizer runs when
the storage is freed). Meta tensors and tensor subclasses (DTensor: its shards are allocated inside
its own dispatch, which the mode does not see) are not counted.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveBytes(TorchDispatchMode):
    """Bytes of the real storages ops create while active, counted while alive; the peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        seen = {id(t.untyped_storage()) for t in tree_flatten((args, kwargs or {}))[0] if isinstance(t, torch.Tensor)}
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor) or tensor.is_meta or type(tensor) is not torch.Tensor:
                continue
            storage = tensor.untyped_storage()
            if id(storage) not in seen and id(storage) not in self.live:
                self.live[id(storage)] = storage.nbytes()
                weakref.finalize(storage, self.live.pop, id(storage), None)
        self.peak = max(self.peak, sum(self.live.values()))
        return out


__all__ = ["LiveBytes"]
