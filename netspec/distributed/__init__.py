"""Scaling out (contract section 8): FSDP2 / DDP builds, per-rank memory plans.

``context`` (the process group and the rank's device), ``units`` (FSDP units and the checks
made before sharding), ``materialize`` (sharding-invariant init), ``runtime`` (sharding and
wrapping), ``plan`` (per-rank bytes, on meta). The API and the checkpoint code call these;
nothing here imports ``netspec.io`` or ``netspec.api``.
"""

from __future__ import annotations

from .context import DistContext, current
from .runtime import materialize, prepare_fsdp, shard_average, wrap_ddp

__all__ = ["DistContext", "current", "materialize", "prepare_fsdp", "shard_average", "wrap_ddp"]
