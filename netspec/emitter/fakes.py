"""Fake-tensor copies for guarded tracing: a module tree and an input whose tensors are fakes.

In: the user's module (or an input shape and dtype) and a ``FakeTensorMode``. Out: a copy of the module
tree — each module a shallow copy with its own tables and containers, its parameters and buffers fake
tensors — on which ops compute shapes and dtypes without touching the user's tensors, caches or
counters; and a fake input of the given shape.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensorMode

FakeCopy = tuple[torch.Tensor, torch.Tensor]  # (the real tensor, its fake)


def fake_tree(
    module: nn.Module, fake: FakeTensorMode, training: bool, made: dict[int, FakeCopy] | None = None
) -> nn.Module:
    """A copy of ``module`` and its submodules (each a shallow copy with its own tables and containers)
    whose parameters and buffers are fake tensors: running it computes shapes and dtypes, never touches
    the user's tensors, caches or counters.

    ``made`` keeps the fakes of earlier copies in the same ``fake`` mode (by the real tensor's id, with
    the real tensor held so the id stays its own): one emit traces every Graph three times, and each
    trace copies its whole subtree, so converting each tensor once is most of a deep model's copy cost."""
    memo: dict[int, nn.Module] = {}
    fakes: dict[int, FakeCopy] = {} if made is None else made

    def fake_of(tensor: torch.Tensor) -> torch.Tensor:
        known = fakes.get(id(tensor))
        if known is None or known[0] is not tensor:
            known = fakes[id(tensor)] = (tensor, _fake(tensor, fake))
        return known[1]

    def copy_of(m: nn.Module) -> nn.Module:
        if id(m) in memo:
            return memo[id(m)]
        clone = copy.copy(m)
        memo[id(m)] = clone
        for name, value in vars(m).items():
            if isinstance(value, (dict, list, set)):
                vars(clone)[name] = copy.copy(value)
        clone._parameters = {k: None if v is None else fake_of(v) for k, v in m._parameters.items()}
        clone._buffers = {k: None if v is None else fake_of(v) for k, v in m._buffers.items()}
        clone._modules = {k: None if v is None else copy_of(v) for k, v in m._modules.items()}
        clone.training = training
        return clone

    return copy_of(module)


def _fake(tensor: torch.Tensor, fake: FakeTensorMode) -> torch.Tensor:
    made = fake.from_tensor(tensor)
    return nn.Parameter(made, requires_grad=tensor.requires_grad) if isinstance(tensor, nn.Parameter) else made


def fake_input(fake: FakeTensorMode, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    with fake:
        return torch.empty(tuple(shape), dtype=dtype)


__all__ = ["FakeCopy", "fake_input", "fake_tree"]
