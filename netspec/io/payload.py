"""What every kind of netspec checkpoint shares: the format's name and version, the metadata record.

In: a built model (or its spec). Out: the pieces a ``.pt`` file (``io.checkpoint``), a
``.safetensors`` file (``io.safetensors_file``) and a DCP directory (``io.dcp``) all write and
read the same way: ``FORMAT``/``FORMAT_VERSION``, ``CheckpointInfo`` (epoch, extra, versions,
dtype, fingerprint, RNG states), the embedded spec data (``init: from:`` rules dropped), the
model's dtype and parameter count, its tied-parameter groups, and which paths name a
checkpoint file or a checkpoint directory. It imports no other checkpoint module, so each of
them builds on it without a cycle.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn

FORMAT = "netspec-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".bin", ".safetensors"})


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says besides the weights; ``netspec.load_checkpoint`` sets it as ``built.checkpoint``."""

    path: str
    epoch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    dtype: str | None = None  # the weights' floating dtype when saved ("float32")
    fingerprint: str | None = None  # of the embedded spec
    rng: dict[str, Any] | None = field(default=None, repr=False)  # RNG states at save time (.pt only)
    # optimizer settings the spec changed since the save: key -> per param group (restored, used) values
    hyperparameters: dict[str, list[tuple[Any, Any]]] = field(default_factory=dict)


def is_checkpoint_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a checkpoint (``.pt``, ``.pth``, ``.ckpt``, ``.bin``) rather than a spec file."""
    return Path(os.fspath(path)).suffix.lower() in CHECKPOINT_SUFFIXES


def embedded_spec_data(spec: Any) -> dict[str, Any]:
    """The merged spec a checkpoint embeds: ``init: from:`` rules dropped, their weights being in the file."""
    data = spec.to_dict()
    init = data.get("init")
    if isinstance(init, list):
        kept = [rule for rule in init if not (isinstance(rule, Mapping) and "from" in rule)]
        if kept:
            data["init"] = kept
        else:
            del data["init"]
    return data


def model_dtype(model: nn.Module) -> str | None:
    """The floating-point dtype of the model's weights (``"float32"``), ``"mixed: a, b"``, or None."""
    found = sorted({str(t.dtype).removeprefix("torch.") for t in model.state_dict().values() if t.is_floating_point()})
    if not found:
        return None
    return found[0] if len(found) == 1 else "mixed: " + ", ".join(found)


def parameter_count(model: nn.Module) -> int:
    """Elements of the model's parameters, each tied tensor counted once."""
    return sum(p.numel() for p in model.parameters())


def is_directory_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``netspec.save`` writes a checkpoint directory (DCP) at ``path``: no file suffix, or a folder."""
    target = Path(os.fspath(path)).expanduser()
    return target.suffix == "" or target.is_dir()


def tied_groups(model: nn.Module) -> list[list[str]]:
    """Names of parameters that are one tensor (``head.weight = embed.weight``), one list per tensor."""
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return [names for names in groups.values() if len(names) > 1]
