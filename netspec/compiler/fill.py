"""Filling one tensor with a ``torch.nn.init`` function, the same way for every dtype and every device.

In: an in-place init function (``nn.init.uniform_``), its keyword arguments and the tensor.
Out: the tensor filled, or the function's own exception for arguments or tensors it rejects.

- On ``meta`` nothing is computed, but every check still runs: the function runs on the meta
  tensor (its own checks: fans of a 1-D tensor, orthogonal's rank, a bad ``mode``), and each
  in-place tensor op it calls (``tensor.uniform_(a, b)``) is repeated with the same arguments on
  a one-element CPU tensor, for the value checks meta kernels skip (``uniform(a=5, b=1)``), with
  the global RNG forked so validation draws nothing from the caller's streams. The functions that
  return early on meta (``trunc_normal_``, ``orthogonal_``, ``sparse_``) run on a one-element CPU
  tensor of the same rank instead.
- A floating tensor of another dtype (float64, bfloat16, float16) is filled in float32 and
  cast, so one seed gives the same weights in every dtype up to that dtype's rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

FILL_DTYPE = torch.float32
# nn.init functions that return before sampling on meta; their sampling arguments need any shape of the rank.
_SKIP_META = frozenset({"trunc_normal_", "orthogonal_", "sparse_"})


class _CheckOnCPU(TorchDispatchMode):
    """Repeats each in-place aten op on a meta tensor (whose other arguments are plain values) on a CPU scalar."""

    def __init__(self) -> None:
        super().__init__()
        self.repeated = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        first = args[0] if args else None
        if (
            isinstance(first, torch.Tensor)
            and first.is_meta
            and func._schema.name.endswith("_")
            and not any(isinstance(a, torch.Tensor) for a in (*args[1:], *kwargs.values()))
        ):
            dtype = first.dtype if first.is_floating_point() else FILL_DTYPE
            func(torch.empty(1, dtype=dtype), *args[1:], **kwargs)
            self.repeated += 1
        return func(*args, **kwargs)


def build_dtype(dtype: torch.dtype | None) -> torch.dtype | None:
    """The dtype to construct layers in: float32 for every other floating dtype (cast afterwards)."""
    if dtype is not None and dtype.is_floating_point and dtype != FILL_DTYPE:
        return FILL_DTYPE
    return dtype


def fill(func: Callable[..., Any], tensor: torch.Tensor, kwargs: Mapping[str, Any]) -> None:
    """``func(tensor, **kwargs)`` in place, checked on meta and computed in float32 (see the module doc)."""
    with torch.no_grad():
        if tensor.is_meta:
            with torch.random.fork_rng(devices=[]):
                with _CheckOnCPU() as check:
                    func(tensor, **kwargs)
                if not check.repeated and tensor.numel() and getattr(func, "__name__", "") in _SKIP_META:
                    func(torch.empty((1,) * tensor.dim(), dtype=FILL_DTYPE), **kwargs)
            return
        if tensor.is_floating_point() and tensor.dtype != FILL_DTYPE:
            staged = torch.empty(tensor.shape, dtype=FILL_DTYPE, device=tensor.device)
            func(staged, **kwargs)
            tensor.copy_(staged)
            return
        func(tensor, **kwargs)
