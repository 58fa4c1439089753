"""``checkpoint_activations:``: recompute some modules' activations in backward.

In: a model and module patterns (``["layers.*"]``; the outermost selected modules are used,
so ``layers.*`` wraps ``layers.0``, ``layers.1`` … and not also their children). Out: those
modules run under ``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)`` whenever
autograd is recording, so their intermediate activations are freed after forward and
recomputed in backward; or ``Problem``s for a pattern that selects no module (with the
closest names).

Nothing else changes: parameter and state_dict names stay the same (the module is not
wrapped in another module: its ``forward`` is replaced on the instance by a picklable,
deep-copyable ``functools.partial``), outputs and gradients are the same (the RNG state is
replayed, so dropout draws the same mask in recomputation), and in ``torch.no_grad()`` or
inference mode the module runs as usual. ``is_checkpointed`` tells wrapped modules apart and
``remove_checkpointing`` undoes it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ProblemList
from .freeze import select_modules


def _checkpointed(forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``forward`` under activation checkpointing when autograd records; plain otherwise."""
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def is_checkpointed(module: nn.Module) -> bool:
    """Whether ``checkpoint_activations`` wrapped ``module``."""
    forward = module.__dict__.get("forward")
    return isinstance(forward, functools.partial) and forward.func is _checkpointed


def wrap(module: nn.Module) -> None:
    """Run ``module`` under activation checkpointing from now on (idempotent)."""
    if not is_checkpointed(module):
        module.forward = functools.partial(_checkpointed, module.forward)  # type: ignore[method-assign]


def remove_checkpointing(module: nn.Module) -> None:
    """Undo ``wrap`` on ``module`` and everything inside it."""
    for sub in module.modules():
        if is_checkpointed(sub):
            del sub.__dict__["forward"]


def select_checkpointed(model: nn.Module, patterns: list[str] | None, source: Any, problems: ProblemList) -> list[str]:
    """The outermost modules the patterns select (nothing is changed); none when a pattern is wrong."""
    before = len(problems.errors)
    chosen: list[str] = []
    for index, pattern in enumerate(patterns or []):
        chosen += select_modules(model, pattern, ("checkpoint_activations", index), source, problems)
    if len(problems.errors) > before:
        return []
    names = list(dict.fromkeys(chosen))
    picked = set(names)
    return [n for n in names if not any(".".join(n.split(".")[:i]) in picked for i in range(1, n.count(".") + 1))]


def wrap_named(model: nn.Module, names: list[str]) -> list[str]:
    """Wrap the modules ``select_checkpointed`` chose (by name); returns the names."""
    for name in names:
        wrap(model.get_submodule(name))
    return list(names)
