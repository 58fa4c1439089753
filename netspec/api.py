"""The Python API: ``read``, ``build``, ``load`` and the ``Built`` result.

In: a spec (path, dict or ``Spec``), overrides, a device and dtype. Out: ``Built`` — the
model with every weight allocated on ``device`` (bit-identical for a given ``seed``), its
training set-up (optimizer, scheduler, gradient clipping) and its loss module. The memory
a model needs is estimated on meta tensors and checked before anything is allocated.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from .compiler.build import build_tree, copy_graphs
from .compiler.infer import DTYPES, infer
from .compiler.memory import check_fits
from .errors import Problem, SpecError
from .spec import Spec, read
from .training import TrainingSetup, setup_training


@dataclass
class Built:
    """What a spec builds. Unpacks as ``model, optimizer, scheduler = built``."""

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    scheduler: Any
    spec: Spec
    loss: nn.Module | None = None
    training: TrainingSetup | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.optimizer, self.scheduler))

    def clip_gradients(self) -> float | None:
        """Apply the spec's ``clip_grad`` to the model's gradients; a no-op returning None without one."""
        if self.training is None:
            return None
        return self.training.clip_gradients(self.model)

    @property
    def warnings(self) -> list[Problem]:
        return self.spec.warnings


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise SpecError(Problem(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}"))
    return DTYPES[dtype]


def build(
    spec: Spec | Mapping[str, Any] | str | os.PathLike[str],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Built:
    """Build the model, optimizer, scheduler and loss a spec describes. ``device="meta"`` allocates nothing."""
    spec = read(spec, overrides)
    device = torch.device(device)
    torch_dtype = _resolve_dtype(dtype)
    if device.type != "meta":
        check_fits(spec.inferred.tensors, device, torch_dtype, spec.source)
    seed = spec.document.seed
    # Seeding must not disturb the caller's global RNG streams: fork them, CPU and the target GPU.
    gpus = [device.index or 0] if device.type == "cuda" else []
    rng = torch.random.fork_rng(devices=gpus) if seed is not None else nullcontext()
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        model = build_tree(spec.inferred.root, device, torch_dtype, copy_graphs(spec.inferred.graphs))
        doc = spec.document
        has_training = any(x is not None for x in (doc.init, doc.freeze, doc.optimizer, doc.scheduler))
        training = (
            setup_training(
                model,
                init=spec.document.init,
                freeze=spec.document.freeze,
                optimizer=spec.document.optimizer,
                scheduler=spec.document.scheduler,
                source=spec.source,
                base_dir=spec.base_dir,
            )
            if has_training
            else TrainingSetup()
        )
    loss = None
    if spec.resolved.loss is not None:
        loss_inferred = infer(spec.resolved.loss, spec.source, None)
        loss = build_tree(loss_inferred.root, device, torch_dtype, copy_graphs(loss_inferred.graphs))
    return Built(model, training.optimizer, training.scheduler, spec, loss, training, device)


def load(
    path: str | os.PathLike[str] | Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
) -> Built:
    """Read and build a spec file (or dict) in one call; a ``.pt``/``.pth``/``.ckpt``/``.bin`` path is a
    checkpoint written by ``netspec.save``: model, optimizer and scheduler are rebuilt and resumed."""
    if isinstance(path, (str, os.PathLike)):
        from .io.checkpoint import is_checkpoint_path, load_checkpoint

        if is_checkpoint_path(path):
            return load_checkpoint(path, device=device, dtype=dtype, overrides=overrides)
    return build(path, device=device, dtype=dtype, overrides=overrides)
