"""``netspec.plan(spec, world_size=N)``: per-rank memory under the spec's ``distributed`` section.

In: a spec (path, dict or ``Spec``), a world size, an optional device-memory budget and
overrides. Out: the ``Plan`` of ``netspec.distributed.plan`` (read here, so that the
distributed stage never reaches up to ``read``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from .distributed.plan import Plan, plan_spec
from .spec import Spec, read


def plan(
    spec: Spec | Mapping[str, Any] | str | os.PathLike[str],
    world_size: int,
    *,
    device_memory: int | None = None,
    dtype: torch.dtype | str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Plan:
    """Per-rank parameter, gradient and optimizer-state bytes of ``spec`` at ``world_size`` (on meta)."""
    if not isinstance(spec, Spec) or overrides:
        spec = read(spec, overrides)
    return plan_spec(spec, world_size, device_memory=device_memory, dtype=dtype)
